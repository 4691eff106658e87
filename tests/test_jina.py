"""jina-reranker-v1 (llama.cpp's jina-bert-v2): loading, pair layout and scores against the
fixture's independent numpy forward pass (scripts/fixtures_jina.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.settings import EngineSettings

from .conftest import FIXTURES, JINA, RunningServer

# Measured against the numpy reference: 2.9e-3 with flash attention, 9.5e-4 without (ggml's GELU
# table and f16 attention, as for XLM-R); scores within a case are at least 0.017 apart.
TOLERANCE = 5e-3
TOLERANCE_NO_FLASH_ATTN = 1.5e-3


@pytest.fixture(scope="module")
def jina_reference() -> dict:
    return json.loads((FIXTURES / "jina-tiny.reference.json").read_text())


@pytest.fixture(scope="module")
def jina() -> Iterator[RerankEngine]:
    engine = RerankEngine(read_gguf_info(JINA), EngineSettings())
    yield engine
    engine.close()


def scores_of(engine: RerankEngine, c: dict) -> np.ndarray:
    pairs = engine.pairs.make(c["query"], c["documents"], truncate=True)
    return np.concatenate([engine.decode([p]) for p in pairs])


def test_the_file_is_a_jina_bert_v2_reranker_with_a_single_projection_head():
    info = read_gguf_info(JINA)
    assert info.architecture == "jina-bert-v2"
    assert "cls.weight" in info.tensors and "cls.output.weight" not in info.tensors


def test_the_pair_is_the_tokenizers_pair_encoding(jina, jina_reference):
    for c in jina_reference["cases"]:
        pairs = jina.pairs.make(c["query"], c["documents"], truncate=True)
        assert pairs[0].tolist() == c["first_pair_ids"], c["name"]
        assert [len(p) for p in pairs] == c["pair_tokens"], c["name"]


@pytest.mark.parametrize("flash_attn,tolerance", [(True, TOLERANCE), (False, TOLERANCE_NO_FLASH_ATTN)])
def test_scores_match_the_reference(jina_reference, flash_attn, tolerance):
    engine = RerankEngine(read_gguf_info(JINA), EngineSettings(flash_attn=flash_attn))
    try:
        for c in jina_reference["cases"]:
            scores = scores_of(engine, c)
            np.testing.assert_allclose(scores, c["scores"], atol=tolerance, rtol=0, err_msg=c["name"])
            assert np.argsort(-scores).tolist() == np.argsort(-np.array(c["scores"])).tolist(), c["name"]
    finally:
        engine.close()


def test_a_packed_decode_reads_each_pairs_own_score(jina, jina_reference):
    c = jina_reference["cases"][0]
    packed = jina.decode(jina.pairs.make(c["query"], c["documents"], truncate=True))
    np.testing.assert_allclose(packed, c["scores"], atol=TOLERANCE, rtol=0)


def test_the_service_serves_it_with_llama_box_fields(jina_reference):
    c = next(c for c in jina_reference["cases"] if c["name"] == "truncated")
    srv = RunningServer("--model", str(JINA), "--alias", "jina-tiny")
    try:
        srv.wait_ready()
        r = httpx.post(f"{srv.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"]}, timeout=60)
    finally:
        srv.stop()
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "jina-tiny"
    got = {x["index"]: x["relevance_score"] for x in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE)
    assert body["usage"]["prompt_tokens"] == sum(c["pair_tokens"]), "the long document is cut to the context"
