"""engine/gguf_info.py: the header facts read before llama.cpp loads a file."""

from __future__ import annotations

import pytest

from server.engine.gguf_info import NotAGGUFError, read_gguf_info, tensor_rows

from .conftest import GTE, JINA, QWEN3, QWEN3_NOHEAD, XLMR, XLMR_EMBED, XLMR_NOKEYS


@pytest.mark.parametrize("path,architecture,context,absolute,tokenizer", [
    (XLMR, "bert", 128, True, "t5"),
    (JINA, "jina-bert-v2", 128, False, "gpt2"),
    (GTE, "gte", 8192, False, "t5"),
    (QWEN3, "qwen3", 512, False, "gpt2"),
], ids=lambda v: v.name if hasattr(v, "name") else None)
def test_the_header_facts_of_each_fixture_family(path, architecture, context, absolute, tokenizer):
    info = read_gguf_info(path)
    assert (info.architecture, info.context_length, info.absolute_positions, info.tokenizer_model) == (
        architecture, context, absolute, tokenizer)


def test_rank_heads_templates_and_add_token_keys():
    assert read_gguf_info(XLMR).has_rank_head and not read_gguf_info(XLMR_EMBED).has_rank_head
    assert read_gguf_info(QWEN3).rerank_template and "cls.output.weight" not in read_gguf_info(QWEN3_NOHEAD).tensors
    keyed, keyless = read_gguf_info(XLMR), read_gguf_info(XLMR_NOKEYS)
    assert (keyed.add_bos, keyed.add_eos) == (True, True)
    assert (keyless.add_bos, keyless.add_eos, keyless.add_sep) == (None, None, None)


def test_weight_types_and_rows():
    assert read_gguf_info(XLMR).weight_type == "F32" and read_gguf_info(QWEN3).weight_type == "F16"
    kind, rows = tensor_rows(QWEN3, {"cls.output.weight": [0, 1]})["cls.output.weight"]
    assert kind == "F16" and len(rows) == 2 and len(rows[0]) == len(rows[1]) > 0
    assert tensor_rows(XLMR, {"no.such.tensor": [0]}) == {"no.such.tensor": None}


def test_a_file_that_is_not_gguf_is_refused_by_name(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(NotAGGUFError, match="model.gguf is not a readable GGUF file"):
        read_gguf_info(bogus)
