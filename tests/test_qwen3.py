"""Qwen3-Reranker: the rerank template, instructions, P(yes) scores, the shared prefix, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from server.engine import EngineSettings, ModelLoadError, RerankEngine, check_servable, shared_prefix_length
from server.gguf_info import read_gguf_info

from .conftest import FIXTURES, RunningServer

QWEN3 = FIXTURES / "qwen3-tiny-f16.gguf"
QWEN3_NOHEAD = FIXTURES / "qwen3-tiny-nohead-f16.gguf"
# f16 weights and KV cache against transformers in f32: measured 6.4e-4 without flash attention and
# 7.1e-4 with it (scripts/fixtures_qwen3.py); scores within a case are at least 0.01 apart.
QWEN3_TOLERANCE = 1e-3
# Decoding tails in a batch after a cached prefix changes the f16 rounding order slightly (measured
# 1.6e-4 without flash attention, 1.4e-3 with it); the server uses both, so its scores get 3e-3.
SHARED_PREFIX_TOLERANCE = 5e-4
SERVED_TOLERANCE = 3e-3


@pytest.fixture(scope="module")
def qwen3_reference() -> dict:
    return json.loads((FIXTURES / "qwen3-tiny.reference.json").read_text())


@pytest.fixture(scope="module")
def qwen3() -> Iterator[RerankEngine]:
    engine = RerankEngine(read_gguf_info(QWEN3), EngineSettings())
    yield engine
    engine.close()


def qcase(reference: dict, name: str) -> dict:
    return next(c for c in reference["cases"] if c["name"] == name)


def test_the_pair_is_the_rerank_template_token_for_token(qwen3, qwen3_reference):
    for c in qwen3_reference["cases"]:
        pairs = qwen3.prepare_pairs(c["query"], c["documents"], True, instruction=c["instruction"])
        assert pairs[0].tolist() == c["first_pair_ids"], c["name"]
        assert [len(p) for p in pairs] == c["pair_tokens"], c["name"]


@pytest.mark.parametrize("name", ["default", "instruction", "many", "unicode"])
def test_p_yes_matches_transformers(qwen3, qwen3_reference, name):
    c = qcase(qwen3_reference, name)
    pairs = qwen3.prepare_pairs(c["query"], c["documents"], True, instruction=c["instruction"])
    scores = np.concatenate([qwen3.decode([p]) for p in pairs])
    assert qwen3.scores_are_probabilities and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, c["scores"], atol=QWEN3_TOLERANCE, rtol=0)


def test_the_instruction_changes_the_scores(qwen3, qwen3_reference):
    default, custom = qcase(qwen3_reference, "default"), qcase(qwen3_reference, "instruction")
    assert default["documents"] == custom["documents"] and default["scores"] != custom["scores"]
    a = qwen3.prepare_pairs(default["query"], default["documents"], True)
    b = qwen3.prepare_pairs(custom["query"], custom["documents"], True, instruction=custom["instruction"])
    assert not np.array_equal(a[0], b[0])


def test_shared_prefix_scores_equal_the_unshared_path(qwen3_reference):
    engine = RerankEngine(read_gguf_info(QWEN3), EngineSettings(flash_attn=False))
    try:
        c = qcase(qwen3_reference, "many")
        pairs = engine.prepare_pairs(c["query"], c["documents"], True)
        prefix = shared_prefix_length(pairs)
        assert prefix > len(pairs[0]) // 2, "the template head and the query are shared"
        alone = np.concatenate([engine.decode([p]) for p in pairs])
        shared = np.concatenate([engine.decode(pairs[i:i + 4], prefix) for i in range(0, len(pairs), 4)])
        np.testing.assert_allclose(shared, alone, atol=SHARED_PREFIX_TOLERANCE, rtol=0)
        # Another request's decode in between replaces the cached prefix, and nothing leaks.
        engine.decode([pairs[0]])
        np.testing.assert_allclose(engine.decode(pairs[:3], prefix), alone[:3], atol=SHARED_PREFIX_TOLERANCE, rtol=0)
    finally:
        engine.close()


def test_a_qwen3_gguf_without_classifier_head_is_refused():
    with pytest.raises(ModelLoadError, match="without the tensor cls.output.weight .* convert_hf_to_gguf.py"):
        check_servable(read_gguf_info(QWEN3_NOHEAD))


def test_the_service_serves_qwen3_with_instructions(qwen3_reference):
    c = qcase(qwen3_reference, "instruction")
    srv = RunningServer("--model", str(QWEN3), "--alias", "Qwen3-Reranker-tiny")
    try:
        srv.wait_ready()
        r = httpx.post(f"{srv.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"],
                                                     "instruction": c["instruction"]}, timeout=60)
        cohere = httpx.post(f"{srv.url}/v2/rerank", json={"query": c["query"], "documents": c["documents"]},
                            timeout=60)
        models = httpx.get(f"{srv.url}/v1/models").json()
    finally:
        srv.stop()
    assert r.status_code == 200
    body = r.json()
    got = {x["index"]: x["relevance_score"] for x in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"], atol=SERVED_TOLERANCE)
    assert body["usage"]["prompt_tokens"] == sum(c["pair_tokens"]), "the template's tokens are counted"
    default = qcase(qwen3_reference, "default")
    got_default = {x["index"]: x["relevance_score"] for x in cohere.json()["results"]}
    np.testing.assert_allclose([got_default[i] for i in range(len(default["documents"]))], default["scores"],
                               atol=SERVED_TOLERANCE, err_msg="Cohere scores are P(yes) as it is")
    assert models["data"][0]["meta"]["scores"] == "probability"
