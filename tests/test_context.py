"""No `--ctx-size` and no pair can abort the process: a learned position table bounds the context.

GPUStack starts every model with `--ctx-size 8192`. An encoder with a learned position table (BERT,
XLM-R: bge-reranker-base and bce-reranker-base_v1 are trained at 512) has no row for a position past
it, and ggml aborts the process on such a pair. Every fixture family is served here under a context
larger than GPUStack's and than any fixture's training, and sent the longest pair it can get.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server.engine.gguf_info import read_gguf_info

from .conftest import GTE, JINA, QWEN3, XLMR, RunningServer

CTX_SIZE = 16_384
FAMILIES = {"xlmr": XLMR, "jina": JINA, "gte": GTE, "qwen3": QWEN3}
# About three tokens a repetition in every fixture's vocabulary: some 30,000 tokens, more than
# CTX_SIZE, within the default limit of 200,000 characters.
LONG = "panda bear china " * 10_000


@pytest.fixture(scope="module")
def oversized() -> Iterator[RunningServer]:
    models = [arg for name, path in FAMILIES.items() for arg in ("--model", str(path), "--alias", name)]
    srv = RunningServer(*models, "--ctx-size", str(CTX_SIZE))
    srv.wait_ready(timeout=120)
    yield srv
    srv.stop()


def rerank(srv: RunningServer, body: dict) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/rerank", json=body, timeout=120)


def test_the_context_is_clamped_to_a_position_table_with_a_warning(oversized):
    contexts = {card["id"]: card["meta"]["context_length"]
                for card in httpx.get(f"{oversized.url}/v1/models").json()["data"]}
    trained = read_gguf_info(XLMR).context_length
    assert trained == 128 and read_gguf_info(XLMR).absolute_positions
    # Rotary (gte, Qwen3) and ALiBi (jina) positions have no table: the flag holds, as in llama.cpp.
    assert contexts == {"xlmr": trained, "jina": CTX_SIZE, "gte": CTX_SIZE, "qwen3": CTX_SIZE}
    warnings = [line for line in oversized.output().splitlines() if "positions" in line]
    assert len(warnings) == 1
    assert f"--ctx-size {CTX_SIZE} is more than the {trained} positions {XLMR.name}" in warnings[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_the_longest_pair_is_answered_and_the_server_stays_up(oversized, name):
    context = httpx.get(f"{oversized.url}/v1/models/{name}").json()["meta"]["context_length"]
    short = rerank(oversized, {"model": name, "query": "panda", "documents": ["bear"]})
    assert short.status_code == 200, short.text
    short_pair = short.json()["usage"]["prompt_tokens"]

    r = rerank(oversized, {"model": name, "query": "panda", "documents": [LONG, "bear"]})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == context + short_pair, "the long pair fills the context exactly"
    # llama-box's anchors: the query against itself, and against one unknown token.
    r = rerank(oversized, {"model": name, "query": "panda", "documents": [LONG], "normalize": True})
    assert r.status_code == 200, r.text

    r = rerank(oversized, {"model": name, "query": "panda", "documents": [LONG], "truncate": False})
    assert r.status_code == 400
    assert f"more than the model's context of {context} tokens" in r.json()["error"]["message"]
    r = rerank(oversized, {"model": name, "query": LONG, "documents": ["bear"]})
    assert r.status_code == 400
    assert f"leaves no room for a document in the model's context of {context} tokens" in r.json()["error"]["message"]

    assert oversized.proc.poll() is None, oversized.output()[-3000:]
    assert httpx.get(f"{oversized.url}/health").status_code == 200
