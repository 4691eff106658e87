"""POST /v1/rerank and /health through a real server, as a llama-box client sees them."""

from __future__ import annotations

import numpy as np
import pytest

from server.scoring import normalize_like_llama_box

from .conftest import TOLERANCE, case


def test_panda_request_has_the_llama_box_shape(client, reference):
    c = case(reference, "panda")
    r = client.post("/v1/rerank", json={"model": "bge-reranker-v2-m3", "query": c["query"],
                                        "top_n": 3, "documents": c["documents"]})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["model", "object", "results", "usage", "id"]
    assert body["model"] == "bge-reranker-v2-m3" and body["object"] == "list"
    assert list(body["usage"]) == ["prompt_tokens", "total_tokens"]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == sum(c["pair_tokens"])
    order = np.argsort(-np.array(c["scores"]), kind="stable").tolist()
    assert [res["index"] for res in body["results"]] == order
    for res in body["results"]:
        assert list(res) == ["index", "document", "relevance_score"]
        assert res["document"] == {"text": c["documents"][res["index"]]}
        assert res["relevance_score"] == pytest.approx(c["scores"][res["index"]], abs=TOLERANCE)


def test_model_defaults_to_the_served_name(client, reference):
    c = case(reference, "panda")
    body = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()
    assert body["model"] == "xlmr-tiny"


def test_top_n_cuts_and_large_values_are_capped(client, reference):
    c = case(reference, "many")
    best = int(np.argmax(c["scores"]))
    one = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"], "top_n": 1}).json()
    assert [r["index"] for r in one["results"]] == [best]
    assert one["usage"]["prompt_tokens"] == sum(c["pair_tokens"]), "every document is scored"
    capped = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"], "top_n": 1000}).json()
    assert len(capped["results"]) == len(c["documents"])


def test_return_documents_false_leaves_the_document_out(client, reference):
    c = case(reference, "panda")
    body = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"],
                                           "return_documents": False}).json()
    assert all(list(r) == ["index", "relevance_score"] for r in body["results"])


def test_documents_as_text_objects(client, reference):
    c = case(reference, "unicode")
    body = client.post("/v1/rerank", json={"query": c["query"],
                                           "documents": [{"text": d} for d in c["documents"]]}).json()
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE)
    assert body["results"][0]["document"]["text"] == c["documents"][body["results"][0]["index"]]


def test_equal_scores_keep_request_order(client, reference):
    c = case(reference, "repeat")
    body = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()
    dupes = [i for i, d in enumerate(c["documents"]) if c["documents"].count(d) > 1]
    ranked = [r["index"] for r in body["results"] if r["index"] in dupes]
    assert ranked == sorted(ranked)


def test_long_document_is_truncated_like_transformers(client, reference):
    c = case(reference, "long")
    body = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE)
    assert body["usage"]["prompt_tokens"] == sum(c["pair_tokens"])


def test_truncate_false_is_a_400_naming_the_document(client, reference):
    c = case(reference, "long")
    index = c["truncated"].index(True)
    r = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"], "truncate": False})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert f"document {index}" in message and "128 tokens" in message


def test_normalize_reproduces_llama_box(client, engine, reference):
    c = case(reference, "panda")
    body = client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"],
                                           "normalize": True}).json()
    anchors = engine.pairs.anchors(c["query"])
    self_score, unknown_score = (float(engine.decode([a])[0]) for a in anchors)
    expected = normalize_like_llama_box(np.array(c["scores"], dtype=np.float32), self_score, unknown_score)
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(3)], expected, atol=TOLERANCE)
    assert all(0.001 - 1e-6 <= s <= 0.999 + 1e-6 for s in got.values())
    assert body["usage"]["prompt_tokens"] == sum(c["pair_tokens"]) + sum(len(a) for a in anchors)


def test_normalize_formula():
    scores = np.array([2.0, -1.0, 0.5])
    out = normalize_like_llama_box(scores, self_score=3.0, unknown_score=-2.0)
    np.testing.assert_allclose(out, 0.001 + (scores + 2.0) * 0.998 / 5.0)
    flat = normalize_like_llama_box(np.array([2.0, 2.0]), self_score=2.0, unknown_score=2.0)
    np.testing.assert_allclose(flat, [1.0, 1.0])


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


ERRORS = [
    (b'{"query": "q", "documents": ["a"', "malformed JSON"),
    (b'{"documents": ["a"]}', "missing required field `query`"),
    (b'{"query": "", "documents": ["a"]}', "$.query"),
    (b'{"query": "q"}', "missing required field `documents`"),
    (b'{"query": "q", "documents": []}', "$.documents"),
    (b'{"query": "q", "documents": [1]}', "$.documents[0]"),
    (b'{"query": "q", "documents": [{"txt": "a"}]}', "$.documents[0]"),
    (b'{"query": 5, "documents": ["a"]}', "$.query"),
    (b'{"query": "q", "documents": ["a"], "top_n": 0}', "$.top_n"),
    (b'{"query": "q", "documents": ["a"], "top_n": -3}', "$.top_n"),
    (b'{"query": "q", "documents": ["a"], "top_n": "three"}', "$.top_n"),
    (b'{"query": "q", "documents": ["a"], "top_n": 1.5}', "$.top_n"),
    (b'{"query": "q", "documents": ["a"], "return_documents": "yes"}', "$.return_documents"),
    (b'["q", "a"]', "Expected `object`"),
    (b'', "malformed JSON"),
]


@pytest.mark.parametrize("body,fragment", ERRORS)
def test_bad_requests_are_400_naming_the_field(client, body, fragment):
    r = client.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error"
    assert fragment in error["message"]


def test_query_too_long_is_400(client):
    r = client.post("/v1/rerank", json={"query": "panda " * 300, "documents": ["hi"]})
    assert r.status_code == 400
    assert "leaves no room for a document" in r.json()["error"]["message"]


def test_unknown_path_is_404_and_wrong_method_405(client):
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"] == {"code": 404, "message": "no route for /v1/nothing",
                                                          "type": "not_found_error"}
    r = client.get("/v1/rerank")
    assert r.status_code == 405 and r.json()["error"]["code"] == 405
    assert r.json()["error"]["message"] == "GET is not allowed on /v1/rerank"


def test_server_keeps_serving_after_errors(client, reference):
    client.post("/v1/rerank", content=b"{", headers={"content-type": "application/json"})
    c = case(reference, "panda")
    assert client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).status_code == 200


def test_health_is_503_while_the_model_loads():
    from starlette.testclient import TestClient

    from server.app import create_app
    from server.engine.gguf_info import read_gguf_info
    from server.provision.plan import ModelPlan
    from server.provision.sources import ModelSource
    from server.registry import ModelRegistry, ModelSlot
    from server.settings import EngineSettings

    from .conftest import XLMR

    slot = ModelSlot(ModelPlan(name="x", source=ModelSource(name="x", path=str(XLMR)), info=read_gguf_info(XLMR),
                               settings=EngineSettings()))
    registry = ModelRegistry([slot])
    client = TestClient(create_app(registry))  # without `with`, the lifespan (the load) does not run
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["error"] == {"code": 503, "message": "the model is still loading", "type": "unavailable_error"}
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
    assert r.status_code == 503
    for path in ("/v1/models", "/models", "/v1/models/x"):
        r = client.get(path)
        assert r.status_code == 503, "a model list is no sign of readiness until the models can serve"
        assert r.json()["error"]["message"] == "the model is still loading"


def test_an_instruction_is_refused_by_a_model_without_one(client):
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["a"], "instruction": "Find animals"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "this model takes no instruction (its pair layout has no place for one)"
