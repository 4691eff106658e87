"""The scoring engine against the transformers reference of the same checkpoint."""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np
import pytest

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.engine.servable import ModelLoadError
from server.faults import InputTooLongError
from server.scheduler import Scheduler
from server.settings import EngineSettings

from .conftest import FIXTURES, TOLERANCE, TOLERANCE_NO_FLASH_ATTN, XLMR, XLMR_EMBED, XLMR_NOKEYS, case


def score_all(engine: RerankEngine, query: str, documents: list[str], truncate: bool = True) -> np.ndarray:
    pairs = engine.pairs.make(query, documents, truncate)
    return np.concatenate([engine.decode([p]) for p in pairs])


def test_pair_layout_is_the_hugging_face_pair_encoding(engine, reference):
    for c in reference["cases"]:
        pair = engine.pairs.make(c["query"], c["documents"][:1], truncate=True)[0]
        assert pair.tolist() == c["first_pair_ids"], c["name"]


CASES = ["panda", "unicode", "many", "long", "repeat", "whitespace"]


@pytest.mark.parametrize("name", CASES)
def test_scores_match_transformers(engine, reference, name):
    c = case(reference, name)
    scores = score_all(engine, c["query"], c["documents"])
    np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE, rtol=0)
    assert np.argsort(-scores, kind="stable").tolist() == np.argsort(-np.array(c["scores"]), kind="stable").tolist()


def test_without_flash_attention_scores_are_closer(reference):
    engine = RerankEngine(read_gguf_info(XLMR), EngineSettings(flash_attn=False))
    try:
        for name in CASES:
            c = case(reference, name)
            scores = score_all(engine, c["query"], c["documents"])
            np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE_NO_FLASH_ATTN, rtol=0, err_msg=name)
    finally:
        engine.close()


def test_token_counts_match_transformers(engine, reference):
    for c in reference["cases"]:
        pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
        assert [len(p) for p in pairs] == c["pair_tokens"], c["name"]


def test_packed_decode_scores_like_one_pair_per_decode(engine, reference):
    c = case(reference, "many")
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    packed = engine.decode(pairs[:8])
    np.testing.assert_allclose(packed, c["scores"][:8], atol=TOLERANCE, rtol=0)


def test_truncation_keeps_the_head_of_a_long_document(engine, reference):
    c = case(reference, "long")
    assert any(c["truncated"]), "the fixture must hold a document longer than the context"
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    assert max(len(p) for p in pairs) == reference["max_length"] == engine.max_pair_tokens


def test_no_truncation_names_the_document_and_token_counts(engine, reference):
    c = case(reference, "long")
    index = c["truncated"].index(True)
    with pytest.raises(InputTooLongError, match=rf"document {index} with the query is \d+ tokens, more than the model's context of 128"):
        engine.pairs.make(c["query"], c["documents"], truncate=False)


def test_a_query_that_fills_the_context_is_refused(engine):
    with pytest.raises(InputTooLongError, match="leaves no room for a document"):
        engine.pairs.make("panda " * 200, ["hi"], truncate=True)


def test_oversize_decode_is_refused_before_llama_cpp(engine):
    pair = np.zeros(engine.max_decode_tokens + 1, dtype=np.int32)
    with pytest.raises(ValueError, match="exceeds the context's limits"):
        engine.decode([pair])
    too_many = [np.zeros(2, dtype=np.int32)] * (engine.n_seq_max + 1)
    with pytest.raises(ValueError, match="exceeds the context's limits"):
        engine.decode(too_many)


def test_gguf_without_add_token_keys_gets_the_xlmr_layout(reference):
    info = read_gguf_info(XLMR_NOKEYS)
    assert (info.add_bos, info.add_eos, info.add_sep) == (None, None, None)
    engine = RerankEngine(info, EngineSettings())
    try:
        c = case(reference, "panda")
        assert engine.pairs.make(c["query"], c["documents"][:1], True)[0].tolist() == c["first_pair_ids"]
        np.testing.assert_allclose(score_all(engine, c["query"], c["documents"]), c["scores"], atol=TOLERANCE, rtol=0)
    finally:
        engine.close()


def test_a_model_without_rank_head_is_refused():
    with pytest.raises(ModelLoadError, match="is not a reranker"):
        RerankEngine(read_gguf_info(XLMR_EMBED), EngineSettings())


def test_scheduler_batches_requests_and_keeps_each_requests_order(engine, reference):
    c = case(reference, "many")
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    scheduler = Scheduler(engine)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(scheduler.score(pairs[i:] + pairs[:i]) for i in range(4)))

    try:
        results = asyncio.run(run())
    finally:
        scheduler.close()
    for i, scores in enumerate(results):
        expected = c["scores"][i:] + c["scores"][:i]
        np.testing.assert_allclose(scores, expected, atol=TOLERANCE, rtol=0)


def info_like(**changes):
    return msgspec.structs.replace(read_gguf_info(XLMR), **changes)


@pytest.mark.parametrize("changes,message", [
    ({"architecture": "qwen3", "tensors": frozenset({"token_embd.weight", "output_norm.weight"}),
      "rerank_template": None}, "without the tensor cls.output.weight .*`make convert MODEL=Qwen"),
    ({"architecture": "qwen3", "tensors": frozenset({"cls.output.weight"}), "rerank_template": None},
     "no tokenizer.chat_template.rerank"),
    ({"tokenizer_model": "bert", "tensors": frozenset({"cls.output.weight", "token_embd.weight"})},
     "is a BERT cross-encoder .* lacks BERT's pooler: upstream llama.cpp's converter drops it.*"
     "`--model cross-encoder/ms-marco-MiniLM-L6-v2`"),
])
def test_files_llama_cpp_would_score_wrongly_are_refused(changes, message):
    from server.engine.context import check_servable

    with pytest.raises(ModelLoadError, match=message):
        check_servable(info_like(**changes))


def test_an_instruction_for_a_model_without_one_is_an_input_error(engine):
    from server.faults import InputError

    with pytest.raises(InputError, match="takes no instruction"):
        engine.pairs.make("q", ["d"], truncate=True, instruction="Find animals")


def test_a_checkpoint_in_jina_reranker_v2_naming_scores_as_the_xlmr_reranker(engine, reference):
    # jina-reranker-v2-base-multilingual is XLM-R under other tensor names (fused mixer.Wqkv,
    # norm1/norm2, mlp.fc1/fc2); llama.cpp runs it through the same graph. Same weights, same scores.
    info = read_gguf_info(FIXTURES / "xlmr-tiny-jina-v2-f32.gguf")
    assert info.architecture == "bert" and "blk.0.attn_qkv.weight" in info.tensors
    jina_v2 = RerankEngine(info, EngineSettings())
    try:
        for c in reference["cases"]:
            scores = score_all(jina_v2, c["query"], c["documents"])
            np.testing.assert_allclose(scores, score_all(engine, c["query"], c["documents"]), atol=1e-6, rtol=0)
            np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE, rtol=0, err_msg=c["name"])
    finally:
        jina_v2.close()
