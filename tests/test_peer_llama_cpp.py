"""llama.cpp's own rerank tests (tools/server/tests/unit/test_rerank.py, and test_rerank_causal.py below),
replayed against this server: the same requests and the same properties, written here (their code is not
copied).

Their model is jina-reranker-tiny; here it is the XLM-R fixture, so orderings are checked against this
fixture's transformers reference instead of their fixed indices, and token counts against this
server's own tokenizer. Every property of the suite holds; none is recorded as a difference.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from .conftest import FIXTURES, JINA, QWEN3, RunningServer, case

PATHS = ["/rerank", "/v1/rerank"]


def jina_results(client, path, body):
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path", PATHS)
def test_rerank_ranks_every_document(client, reference, path):
    """test_rerank: as many results as documents; the best and the worst where the reference has them."""
    c = case(reference, "many")
    body = jina_results(client, path, {"query": c["query"], "documents": c["documents"]})
    results = body["results"]
    assert len(results) == len(c["documents"])
    best = max(results, key=lambda r: r["relevance_score"])
    worst = min(results, key=lambda r: r["relevance_score"])
    assert best["index"] == int(np.argmax(c["scores"])) and worst["index"] == int(np.argmin(c["scores"]))


@pytest.mark.parametrize("path", PATHS)
def test_rerank_tei_format(client, reference, path):
    """test_rerank_tei_format: `texts` gives a bare array of {index, score}, best and worst as above."""
    c = case(reference, "many")
    ranks = client.post(path, json={"query": c["query"], "texts": c["documents"]}).json()
    assert isinstance(ranks, list) and len(ranks) == len(c["documents"])
    assert all(set(r) == {"index", "score"} for r in ranks)
    assert max(ranks, key=lambda r: r["score"])["index"] == int(np.argmax(c["scores"]))
    assert min(ranks, key=lambda r: r["score"])["index"] == int(np.argmin(c["scores"]))


@pytest.mark.parametrize("documents", [[], None, 123, [1, 2, 3]], ids=repr)
def test_invalid_rerank_request(client, documents):
    """test_invalid_rerank_req: an empty, missing or non-text `documents` is a 400 with an error."""
    r = client.post("/rerank", json={"query": "Machine learning is", "documents": documents})
    assert r.status_code == 400 and "error" in r.json()


def test_rerank_usage(client):
    """test_rerank_usage: prompt and total tokens are equal, and count every pair's tokens."""
    query, documents = "Machine learning is", ["A machine", "Learning is"]
    usage = jina_results(client, "/rerank", {"query": query, "documents": documents})["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"]
    singles = [jina_results(client, "/rerank", {"query": query, "documents": [d]})["usage"]["prompt_tokens"]
               for d in documents]
    assert usage["prompt_tokens"] == sum(singles)


@pytest.mark.parametrize("top_n,expected", [(None, 4), (2, 2), (4, 4), (99, 4)])
@pytest.mark.parametrize("form", ["documents", "texts"])
def test_rerank_top_n(client, top_n, expected, form):
    """test_rerank_top_n and test_rerank_tei_top_n: top_n cuts, and a top_n past the documents is capped."""
    documents = ["A machine", "Learning is", "Paris is the capital of France", "what is panda?"]
    answer = client.post("/rerank", json={"query": "Machine learning is", form: documents, "top_n": top_n}).json()
    results = answer if form == "texts" else answer["results"]
    assert len(results) == expected


# llama.cpp's test_rerank_causal.py (PR #25448 at 88c15f2f, not merged upstream): a causal reranker
# (Qwen3 here, the Qwen3 fixture) and the pooling reranker it must leave unchanged (jina-tiny). Their
# "the relevant document" is the reference's best document here; their "above 0.5" and "spread above
# 0.1" are checked where the fixture's reference has them too, so the checks can fail.


@pytest.fixture(scope="module")
def causal():
    srv = RunningServer("--model", str(QWEN3), "--alias", "qwen3", "--model", str(JINA), "--alias", "jina")
    srv.wait_ready()
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c
    srv.stop()


@pytest.fixture(scope="module")
def qwen3_case() -> dict:
    reference = json.loads((FIXTURES / "qwen3-tiny.reference.json").read_text())
    c = next(c for c in reference["cases"] if c["name"] == "many")
    return {"query": c["query"], "documents": c["documents"][:4], "scores": c["scores"][:4]}


def test_causal_rerank_scores_discriminate(causal, qwen3_case):
    body = jina_results(causal, "/v1/rerank", {"model": "qwen3", "query": qwen3_case["query"],
                                               "documents": qwen3_case["documents"]})
    score = {r["index"]: r["relevance_score"] for r in body["results"]}
    relevant = int(np.argmax(qwen3_case["scores"]))
    assert len(score) == 4 and all(score[relevant] > s for i, s in score.items() if i != relevant)
    assert all(0.0 <= s <= 1.0 for s in score.values())
    assert max(qwen3_case["scores"]) > 0.5 and score[relevant] > 0.5
    assert score[relevant] - min(score.values()) > 0.1


def test_causal_rerank_top_n(causal, qwen3_case):
    body = jina_results(causal, "/v1/rerank", {"model": "qwen3", "query": qwen3_case["query"],
                                               "documents": qwen3_case["documents"], "top_n": 2})
    assert len(body["results"]) == 2


def test_causal_rerank_tei_format(causal, qwen3_case):
    ranks = jina_results(causal, "/v1/rerank", {"model": "qwen3", "query": qwen3_case["query"],
                                                "texts": qwen3_case["documents"]})
    assert isinstance(ranks, list) and len(ranks) == 4
    score = {r["index"]: r["score"] for r in ranks}
    order = np.argsort(qwen3_case["scores"])
    assert score[int(order[-1])] > score[int(order[0])]


def test_causal_rerank_single_document(causal, qwen3_case):
    body = jina_results(causal, "/v1/rerank", {"model": "qwen3", "query": qwen3_case["query"],
                                               "documents": qwen3_case["documents"][:1]})
    assert len(body["results"]) == 1 and 0.0 <= body["results"][0]["relevance_score"] <= 1.0


def test_pooling_rerank_still_works(causal):
    """jina-tiny on /rerank next to the causal model: three results, in the reference's order."""
    reference = json.loads((FIXTURES / "jina-tiny.reference.json").read_text())
    c = next(c for c in reference["cases"] if c["name"] == "compiler")
    documents, scores = c["documents"][:3], c["scores"][:3]
    body = jina_results(causal, "/rerank", {"model": "jina", "query": c["query"], "documents": documents})
    score = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert len(score) == 3
    assert sorted(score, key=score.get) == list(np.argsort(scores))
