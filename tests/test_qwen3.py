"""Qwen3-Reranker: the rerank template, instructions, P(yes) scores, the shared prefix, refusals."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.engine import classifier
from server.engine import context as engine_module
from server.engine.context import CAUSAL_UBATCH, RerankEngine
from server.engine.gguf_info import read_gguf_info, tensor_rows
from server.engine.pairs import shared_prefix_length
from server.engine.servable import ModelLoadError, check_servable
from server.settings import EngineSettings

from .conftest import FIXTURES, QWEN3, QWEN3_NOHEAD, RunningServer

# f16 weights and KV cache against transformers in f32: measured 6.4e-4 without flash attention and
# 7.1e-4 with it (scripts/fixtures_qwen3.py); scores within a case are at least 0.01 apart.
QWEN3_TOLERANCE = 1e-3
# Decoding tails in a batch after a cached prefix changes the f16 rounding order slightly (measured
# 1.6e-4 without flash attention, 1.4e-3 with it); the server uses both, so its scores get 3e-3.
SHARED_PREFIX_TOLERANCE = 5e-4
SERVED_TOLERANCE = 3e-3
# The hidden-state head and rank pooling do the same arithmetic, except that ggml rounds the hidden
# state to f16 for the f16 classifier's product where the engine keeps f32: measured 2.8e-4 apart
# on the untied copy; against transformers the hidden-state head is the closer (5.4e-4 against 7.1e-4).
HEAD_TOLERANCE = 1e-3


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
        pairs = qwen3.pairs.make(c["query"], c["documents"], True, instruction=c["instruction"])
        assert pairs[0].tolist() == c["first_pair_ids"], c["name"]
        assert [len(p) for p in pairs] == c["pair_tokens"], c["name"]


@pytest.mark.parametrize("name", ["default", "instruction", "many", "unicode"])
def test_p_yes_matches_transformers(qwen3, qwen3_reference, name):
    c = qcase(qwen3_reference, name)
    pairs = qwen3.pairs.make(c["query"], c["documents"], True, instruction=c["instruction"])
    scores = np.concatenate([qwen3.decode([p]) for p in pairs])
    assert qwen3.score_kind == "probability" and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, c["scores"], atol=QWEN3_TOLERANCE, rtol=0)


def test_the_instruction_changes_the_scores(qwen3, qwen3_reference):
    default, custom = qcase(qwen3_reference, "default"), qcase(qwen3_reference, "instruction")
    assert default["documents"] == custom["documents"] and default["scores"] != custom["scores"]
    a = qwen3.pairs.make(default["query"], default["documents"], True)
    b = qwen3.pairs.make(custom["query"], custom["documents"], True, instruction=custom["instruction"])
    assert not np.array_equal(a[0], b[0])


def written_forms(instruction: str, query: str, documents: list[str], head: str, tail: str):
    """The ways users format Qwen3 prompts by hand: regolo's example (seed 003), with the
    `<Instruct>: ` prefix, vLLM's full template text around query and documents, and a written
    query with plain documents."""
    marked = [f"<Document>: {d}" for d in documents]
    yield f"{instruction}\n<Query>: {query}", marked
    yield f"<Instruct>: {instruction}\n<Query>: {query}\n", marked
    yield f"{head}<Instruct>: {instruction}\n<Query>: {query}\n", [d + tail for d in marked]
    yield f"{instruction}\n<Query>: {query}", documents


def test_a_pre_formatted_qwen3_request_is_the_plain_request_with_its_instruction(qwen3, qwen3_reference):
    c = qcase(qwen3_reference, "instruction")
    plain = qwen3.pairs.make(c["query"], c["documents"], True, instruction=c["instruction"])
    assert [len(p) for p in plain] == c["pair_tokens"]
    template = read_gguf_info(QWEN3).rerank_template
    head, tail = template.split("<Instruct>: ")[0], template.split("{document}")[1]
    for query, documents in written_forms(c["instruction"], c["query"], c["documents"], head, tail):
        written = qwen3.pairs.make(query, documents, True)
        assert [p.tolist() for p in written] == [p.tolist() for p in plain], query
        np.testing.assert_array_equal(qwen3.decode(written), qwen3.decode(plain))


def test_shared_prefix_scores_equal_the_unshared_path(qwen3_reference):
    engine = RerankEngine(read_gguf_info(QWEN3), EngineSettings(flash_attn=False))
    try:
        c = qcase(qwen3_reference, "many")
        pairs = engine.pairs.make(c["query"], c["documents"], True)
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


def rank_pooling_engine(monkeypatch: pytest.MonkeyPatch, path: Path = QWEN3, **settings) -> RerankEngine:
    """The engine with llama.cpp's rank head (its path when the classifier's rows cannot be read)."""
    monkeypatch.setattr(engine_module, "head_row", lambda info, rows, token_ids, n_embd: None)
    return RerankEngine(read_gguf_info(path), EngineSettings(**settings))


def untied_copy(tmp_path: Path) -> Path:
    """The fixture with a classifier that is no row of the token embedding, as in 4B and 8B: its
    yes and no rows swapped and scaled by 1.25 (f16, in place)."""
    path = tmp_path / "qwen3-untied-f16.gguf"
    shutil.copy(QWEN3, path)
    kind, (yes, no) = tensor_rows(path, {"cls.output.weight": [0, 1]})["cls.output.weight"]
    assert kind == "F16"
    scaled = [(np.frombuffer(r, dtype=np.float16) * 1.25).astype(np.float16).tobytes() for r in (no, yes)]
    data = path.read_bytes()
    at = data.index(yes + no)
    path.write_bytes(data[:at] + scaled[0] + scaled[1] + data[at + len(yes) + len(no):])
    return path


def test_qwen3_scores_come_from_the_last_hidden_state(qwen3):
    assert qwen3.head is not None and qwen3.head.shape == (qwen3.n_embd,)


@pytest.mark.parametrize("name", ["default", "many"])
def test_the_hidden_state_head_scores_like_rank_pooling_on_an_untied_classifier(monkeypatch, tmp_path,
                                                                               qwen3_reference, name):
    path = untied_copy(tmp_path)
    c = qcase(qwen3_reference, name)
    hidden = RerankEngine(read_gguf_info(path), EngineSettings())
    try:
        pairs = hidden.pairs.make(c["query"], c["documents"], True)
        from_hidden = np.concatenate([hidden.decode([p]) for p in pairs])
        from_hidden_shared = hidden.decode(pairs[:4], shared_prefix_length(pairs))
    finally:
        hidden.close()
    pooled_engine = rank_pooling_engine(monkeypatch, path)
    try:
        pooled = np.concatenate([pooled_engine.decode([p]) for p in pairs])
    finally:
        pooled_engine.close()
    assert np.abs(pooled - np.array(c["scores"])).max() > 0.05, "the untied head scores differently"
    np.testing.assert_allclose(from_hidden, pooled, atol=HEAD_TOLERANCE, rtol=0)
    np.testing.assert_allclose(from_hidden_shared, pooled[:4], atol=SERVED_TOLERANCE, rtol=0)


@pytest.mark.parametrize("name", ["default", "many"])
def test_rank_pooling_matches_transformers_too(monkeypatch, qwen3_reference, name):
    engine = rank_pooling_engine(monkeypatch)
    try:
        c = qcase(qwen3_reference, name)
        pooled = np.concatenate([engine.decode([p]) for p in engine.pairs.make(c["query"], c["documents"], True)])
    finally:
        engine.close()
    np.testing.assert_allclose(pooled, c["scores"], atol=QWEN3_TOLERANCE, rtol=0)


def test_quantized_classifier_rows_are_read_by_ggml():
    # One Q8_0 block: an f16 scale, then 32 int8 quants; the value is scale * quant.
    quants = np.arange(-16, 16, dtype=np.int8)
    block = np.float16(0.5).tobytes() + quants.tobytes()
    np.testing.assert_array_equal(classifier._to_float("Q8_0", block, 32), 0.5 * quants.astype(np.float32))
    np.testing.assert_array_equal(classifier._to_float("F16", np.float16([1.5, -2]).tobytes(), 2), [1.5, -2])


def test_a_pair_longer_than_the_ubatch_is_scored_under_rank_pooling(monkeypatch, qwen3):
    # A causal model's decode is split into ubatches of CAUSAL_UBATCH tokens, which bounds rank
    # pooling's vocabulary-sized compute buffer; a long pair must still get one score.
    engine = rank_pooling_engine(monkeypatch, ctx_size=2 * CAUSAL_UBATCH)
    try:
        long_pair = engine.pairs.make("panda", ["bamboo forest " * CAUSAL_UBATCH], True)
        assert len(long_pair[0]) > CAUSAL_UBATCH
        pooled = engine.decode(long_pair)
    finally:
        engine.close()
    long_engine = RerankEngine(read_gguf_info(QWEN3), EngineSettings(ctx_size=2 * CAUSAL_UBATCH))
    try:
        np.testing.assert_allclose(long_engine.decode(long_pair), pooled, atol=HEAD_TOLERANCE, rtol=0)
    finally:
        long_engine.close()


def test_a_qwen3_gguf_without_classifier_head_is_refused():
    with pytest.raises(ModelLoadError, match="without the tensor cls.output.weight .*`--model Qwen/Qwen3-Reranker"):
        check_servable(read_gguf_info(QWEN3_NOHEAD))


def test_the_service_serves_qwen3_with_instructions(qwen3_reference):
    c = qcase(qwen3_reference, "instruction")
    srv = RunningServer("--model", str(QWEN3), "--alias", "Qwen3-Reranker-tiny")
    try:
        srv.wait_ready()
        r = httpx.post(f"{srv.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"],
                                                     "instruction": c["instruction"]}, timeout=60)
        # Seed 003's request (regolo's documentation): the instruction and markers written by hand.
        written = httpx.post(f"{srv.url}/v1/rerank", timeout=60, json={
            "model": "Qwen3-Reranker-4B", "query": f"{c['instruction']}\n<Query>: {c['query']}",
            "documents": [f"<Document>: {d}" for d in c["documents"]]})
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
    assert written.json()["usage"] == body["usage"]
    assert {x["index"]: x["relevance_score"] for x in written.json()["results"]} == got, "scored as the plain request"
    assert [x["document"]["text"] for x in written.json()["results"]] == \
        [f"<Document>: {c['documents'][x['index']]}" for x in written.json()["results"]], "documents come back as sent"
    default = qcase(qwen3_reference, "default")
    got_default = {x["index"]: x["relevance_score"] for x in cohere.json()["results"]}
    np.testing.assert_allclose([got_default[i] for i in range(len(default["documents"]))], default["scores"],
                               atol=SERVED_TOLERANCE, err_msg="Cohere scores are P(yes) as it is")
    assert models["data"][0]["meta"]["scores"] == "probability"
