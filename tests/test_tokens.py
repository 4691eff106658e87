"""Token ids as the models' reference tokenizers (Hugging Face `tokenizers`, with each checkpoint's own
tokenizer.json) make them, on text that needs normalising: combining accents, compatibility forms,
Hangul jamo, whitespace. Qwen3's vocabulary is its real one (151,669 tokens)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator

import httpx
import pytest
from tokenizers import Tokenizer

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.settings import EngineSettings

from .conftest import FIXTURES, GTE, QWEN3, ROOT, XLMR, RunningServer

TEXTS = [
    "e\u0301te\u0301",  # été with combining accents, as macOS file names and some PDF extractors write it
    "été", "naïve cafe\u0301", "A\u030a", "\u1100\u1161", "Ａｂｃ①", "ﬁne", "x\u200by",
    "hello ", " hello  world ", "plain ascii text",
]
FAMILIES = {
    "qwen3": (QWEN3, FIXTURES / "qwen3-tiny-checkpoint" / "tokenizer.json"),
    "xlmr": (XLMR, FIXTURES / "xlmr-tiny-checkpoint" / "tokenizer.json"),
    "gte": (GTE, FIXTURES / "gte-tiny-checkpoint" / "tokenizer.json"),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> Iterator[tuple[RerankEngine, Tokenizer]]:
    gguf, tokenizer_json = FAMILIES[request.param]
    engine = RerankEngine(read_gguf_info(gguf), EngineSettings())
    yield engine, Tokenizer.from_file(str(tokenizer_json))
    engine.close()


@pytest.mark.parametrize("text", TEXTS, ids=ascii)
def test_token_ids_equal_the_reference_tokenizers(family, text):
    engine, reference = family
    assert engine.tokenize(text) == reference.encode(text, add_special_tokens=False).ids


def test_a_decomposed_document_counts_and_scores_as_the_composed_one():
    srv = RunningServer("--model", str(QWEN3))
    try:
        srv.wait_ready()
        answers = [httpx.post(f"{srv.url}/v1/rerank", json={"query": "summer", "documents": [document]}).json()
                   for document in ("un été à Paris", "un e\u0301te\u0301 a\u0300 Paris")]
    finally:
        srv.stop()
    assert answers[0]["usage"] == answers[1]["usage"]
    assert answers[0]["results"][0]["relevance_score"] == answers[1]["results"][0]["relevance_score"]
    assert answers[1]["results"][0]["document"]["text"] == "un e\u0301te\u0301 a\u0300 Paris", "returned as sent"


XLMR_VOCAB = (ROOT / ".cache" / f"llama_cpp_python-{importlib.metadata.version('llama-cpp-python')}" / "vendor"
              / "llama.cpp" / "models" / "ggml-vocab-nomic-bert-moe.gguf")
"""XLM-R's real 250,002-piece vocabulary, as llama.cpp's converter wrote it from sentencepiece.bpe.model;
`make install` downloads llama-cpp-python's source, which ships it."""


@pytest.mark.parametrize("text", ["hello ", "hello  ", "hello\n", "hello \t", " hello", "hello"], ids=ascii)
def test_xlmr_trailing_whitespace_is_tokenized_as_xlmr_was_pretrained(text):
    """The README's choice, on the real vocabulary: SentencePiece 0.2.3 on XLM-R's sentencepiece.bpe.model
    gives [0, 33600, 31, 2] (`<s> ▁hell o </s>`) for each text here (measured; ids in the fairseq
    dictionary), where the tokenizer.json that TEI reads adds a lone ▁ (6) before `</s>` for trailing
    whitespace. The engine tokenizes with llama.cpp, which this checks."""
    import llama_cpp

    assert XLMR_VOCAB.is_file(), f"{XLMR_VOCAB} is missing: `make install` downloads llama-cpp-python's source"
    vocab = llama_cpp.Llama(str(XLMR_VOCAB), vocab_only=True, verbose=False)
    assert vocab.tokenize(text.encode(), add_bos=True, special=False) == [0, 33600, 31, 2]
