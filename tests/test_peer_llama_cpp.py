"""llama.cpp's own rerank tests (tools/server/tests/unit/test_rerank.py), replayed against this server:
the same requests and the same properties, written here (their code is not copied).

Their model is jina-reranker-tiny; here it is the XLM-R fixture, so orderings are checked against this
fixture's transformers reference instead of their fixed indices, and token counts against this
server's own tokenizer. Every property of the suite holds; none is recorded as a difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import case

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
