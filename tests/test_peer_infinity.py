"""Infinity's own rerank and authentication tests, replayed against this server: the same requests
and the same properties, written here (their code is not copied). Source: michaelfeil/infinity at
fcb951cb (libs/infinity_emb/tests/end_to_end/test_torch_reranker.py and test_authentication.py).

Their model is mxbai-rerank-xsmall-v1 with its Hugging Face pipeline as the reference; here it is the
XLM-R fixture and its transformers reference, so "the Paris document first" becomes "the reference's
best document first". Their authentication test means to check 401 without a key and not 401 with it
(an indentation slip makes it send only the keyed request); the intended checks are replayed. Where this
server answers otherwise on purpose, the difference is in DIFFERENCES with its reason, and a test checks
that it still holds.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from .conftest import API_KEY, TOLERANCE, case

DIFFERENCES = {
    "no raw_scores": "/rerank tells Infinity's body from Jina's by `raw_scores`, which Infinity's clients "
                     "(infinity_client, LangChain's InfinityRerank) always send. A bare {query, documents} "
                     "body is read as Jina's and llama-box's: raw logits, documents as {\"text\"} objects.",
    "422": "Infinity answers 422 for a bad body; this server answers 400 for every bad request, in the one "
           "error envelope, as llama-box did.",
    "401 body": "Infinity's 401 body is {\"detail\": \"Unauthorized\"}; here it is the error envelope. The "
                "status and the WWW-Authenticate: Bearer header are the same.",
    "/models stats": "Infinity's model objects carry a `stats` object; this server answers OpenAI's model "
                     "list (see test_peer_schemas.py).",
    "/metrics": "Infinity serves /metrics to anyone; with keys this server asks the key there too (the "
                "metrics name the models and their traffic). Prometheus sends it from `authorization` in its "
                "scrape config.",
    "embed and classify": "this server only reranks: /embeddings and /classify are no routes (404), where "
                          "Infinity answers 400 for a reranker.",
}

PERMUTED = 3


def infinity(client, **body) -> dict:
    """An Infinity request as its clients send it: `raw_scores` always present."""
    r = client.post("/rerank", json={"raw_scores": False, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_model_route(client):
    r = client.get("/models")
    assert r.status_code == 200 and "data" in r.json()
    assert r.json()["data"][0]["id"] == "xlmr-tiny"


def test_difference_models_have_no_stats(client):
    assert "stats" not in client.get("/models").json()["data"][0] and "/models stats" in DIFFERENCES


def test_reranker(client, reference):
    """Every document's score is the reference's sigmoid (theirs: within 0.01 of the HF pipeline)."""
    c = case(reference, "many")
    answer = infinity(client, model="xlmr-tiny", query=c["query"], documents=c["documents"])
    assert "model" in answer and "usage" in answer and len(answer["results"]) == len(c["documents"])
    by_index = sorted(answer["results"], key=lambda r: r["index"])
    expected = 1 / (1 + np.exp(-np.asarray(c["scores"])))
    np.testing.assert_allclose([r["relevance_score"] for r in by_index], expected, atol=TOLERANCE)


def test_reranker_top_n(client, reference):
    """Every order of three documents x top_n 1, 2, 8000 x return_documents, 36 requests at once: the
    count is min(top_n, 3), and the best document (by the reference) is first, with its text."""
    c = case(reference, "panda")
    best = c["documents"][int(np.argmax(c["scores"]))]
    cases = [(list(order), top_n, docs) for order in itertools.permutations(c["documents"][:PERMUTED])
             for top_n in (1, 2, 8000) for docs in (True, False)]

    def send(args):
        order, top_n, docs = args
        with httpx.Client(base_url=str(client.base_url), timeout=60) as each:
            return args, infinity(each, model="xlmr-tiny", query=c["query"], documents=order, top_n=top_n,
                                  return_documents=docs)

    with ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(send, cases))
    assert len(answers) == 36
    for (order, top_n, docs), answer in answers:
        results = answer["results"]
        assert len(results) == min(top_n, PERMUTED)
        assert results[0]["index"] == order.index(best)
        if docs:
            assert results[0]["document"] == best


@pytest.mark.parametrize("top_n", [-1, 0])
def test_reranker_invalid_top_n(client, top_n):
    r = client.post("/rerank", json={"model": "xlmr-tiny", "query": "q", "documents": ["a", "b"], "top_n": top_n,
                                     "raw_scores": False})
    assert r.status_code == 400 and "top_n" in r.json()["error"]["message"] and "422" in DIFFERENCES


def test_difference_a_body_without_raw_scores_is_read_as_jina(client):
    r = client.post("/rerank", json={"query": "q", "documents": ["a"], "return_documents": True})
    assert r.json()["results"][0]["document"] == {"text": "a"} and "no raw_scores" in DIFFERENCES


@pytest.mark.parametrize("path", ["/embeddings", "/classify"])
def test_difference_a_reranker_does_not_embed_or_classify(client, path):
    assert client.post(path, json={"model": "xlmr-tiny", "input": ["a"]}).status_code == 404
    assert "embed and classify" in DIFFERENCES


@pytest.fixture(scope="module")
def keyed_client(keyed):
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        yield c


ROUTES = [("get", "/models", None),
          ("post", "/rerank", {"model": "xlmr-tiny", "query": "Where is Munich?", "documents": ["Munich is in Germany."],
                               "raw_scores": False})]


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[p for _, p, _ in ROUTES])
def test_authentication(keyed_client, method, path, body):
    """Without a key, with a wrong one or another scheme: 401 with `WWW-Authenticate: Bearer`; with the
    key (the scheme in any case): served."""
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}):
        r = keyed_client.request(method, path, json=body, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert r.json()["error"]["code"] == 401 and "401 body" in DIFFERENCES
    for scheme in ("Bearer", "bearer"):
        r = keyed_client.request(method, path, json=body, headers={"Authorization": f"{scheme} {API_KEY}"})
        assert r.status_code == 200, r.text


def test_authentication_comes_before_the_body_is_checked(keyed_client):
    r = keyed_client.post("/rerank", json={"query": "q", "documents": []})
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
def test_open_routes_need_no_key(keyed_client, path):
    assert keyed_client.get(path).status_code == 200


def test_difference_metrics_need_the_key(keyed_client):
    assert keyed_client.get("/metrics").status_code == 401
    assert keyed_client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert "/metrics" in DIFFERENCES
