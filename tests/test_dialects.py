"""Every client dialect and operational endpoint against a real running server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import cohere
import httpx
import numpy as np
import pytest

from .conftest import TOLERANCE, XLMR, RunningServer, case


def sigmoid(x: list[float]) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v1/reranking", "/reranking"])
def test_jina_dialect_on_every_rerank_path(client, reference, path):
    c = case(reference, "panda")
    body = client.post(path, json={"query": c["query"], "documents": c["documents"]}).json()
    assert list(body) == ["model", "object", "results", "usage", "id"]
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(3)], c["scores"], atol=TOLERANCE)


def test_tei_dialect_returns_a_bare_sorted_array(client, reference):
    c = case(reference, "panda")
    ranks = client.post("/rerank", json={"query": c["query"], "texts": c["documents"]}).json()
    assert isinstance(ranks, list) and all(list(r) == ["index", "score"] for r in ranks)
    expected = sigmoid(c["scores"])
    assert [r["index"] for r in ranks] == np.argsort(-expected, kind="stable").tolist()
    np.testing.assert_allclose([r["score"] for r in ranks], expected[[r["index"] for r in ranks]], atol=TOLERANCE)

    raw = client.post("/rerank", json={"query": c["query"], "texts": c["documents"], "raw_scores": True,
                                       "return_text": True}).json()
    assert all(list(r) == ["index", "score", "text"] for r in raw)
    assert all(r["text"] == c["documents"][r["index"]] for r in raw)
    np.testing.assert_allclose([r["score"] for r in raw], np.array(c["scores"])[[r["index"] for r in raw]],
                               atol=TOLERANCE)


def test_infinity_dialect_on_rerank_with_raw_scores(client, reference):
    """Infinity's answer (infinity_client's ReRankResult): object "rerank", documents as strings when
    asked, sigmoid scores unless raw_scores."""
    c = case(reference, "panda")
    body = client.post("/rerank", json={"query": c["query"], "documents": c["documents"], "raw_scores": False,
                                        "return_documents": True, "model": "xlmr-tiny"}).json()
    assert body["object"] == "rerank" and body["model"] == "xlmr-tiny"
    assert {"id", "created", "usage"} <= set(body) and body["usage"]["prompt_tokens"] == sum(c["pair_tokens"])
    assert all(r["document"] == c["documents"][r["index"]] for r in body["results"])
    expected = sigmoid(c["scores"])
    assert [r["index"] for r in body["results"]] == np.argsort(-expected, kind="stable").tolist()
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]],
                               expected[[r["index"] for r in body["results"]]], atol=TOLERANCE)
    raw = client.post("/rerank", json={"query": c["query"], "documents": c["documents"], "raw_scores": True}).json()
    assert all("document" not in r for r in raw["results"]), "Infinity's return_documents defaults to false"
    np.testing.assert_allclose(sorted(r["relevance_score"] for r in raw["results"]), sorted(c["scores"]),
                               atol=TOLERANCE)


def test_tei_errors_name_the_field(client):
    r = client.post("/rerank", json={"query": "q", "texts": []})
    assert r.status_code == 400 and "$.texts" in r.json()["error"]["message"]


def test_cohere_sdk_v2_rerank(server, reference):
    c = case(reference, "many")
    co = cohere.ClientV2(api_key="unused", base_url=server.url)
    response = co.rerank(model="rerank-v3.5", query=c["query"], documents=c["documents"], top_n=3)
    expected = sigmoid(c["scores"])
    best = np.argsort(-expected, kind="stable")[:3].tolist()
    assert [r.index for r in response.results] == best
    np.testing.assert_allclose([r.relevance_score for r in response.results], expected[best], atol=TOLERANCE)
    assert response.id and response.meta.api_version.version == "2"
    assert response.meta.tokens.input_tokens == sum(c["pair_tokens"])


def test_cohere_max_tokens_per_doc_cuts_documents(client, engine, reference):
    c = case(reference, "long")
    body = client.post("/v2/rerank", json={"query": c["query"], "documents": c["documents"],
                                           "max_tokens_per_doc": 5}).json()
    query_tokens = len(engine.tokenize(c["query"]))
    doc_tokens = [min(len(engine.tokenize(d)), 5) for d in c["documents"]]
    xlmr_special_tokens = 4  # <s> q </s></s> d </s>
    expected = sum(xlmr_special_tokens + query_tokens + n for n in doc_tokens)
    assert body["meta"]["tokens"]["input_tokens"] == expected
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in body["results"])


def test_models_list(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["xlmr-tiny"]
    meta = body["data"][0]["meta"]
    assert meta == {"family": None, "architecture": "bert", "repository": None, "file": "xlmr-tiny-f32.gguf",
                    "quantization": "F32", "converted": False, "context_length": 128, "batch_tokens": 256,
                    "long_documents": "truncate", "scores": "logit"}


def test_metrics_are_a_prometheus_exposition(client, reference):
    c = case(reference, "panda")
    client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in ["rerank_http_requests_total", "rerank_http_request_seconds_bucket", "rerank_documents_total",
                 "rerank_prompt_tokens_total", "rerank_queue_pairs", "rerank_batch_pairs_bucket",
                 "rerank_model_load_seconds"]:
        assert name in text, name
    assert 'rerank_http_requests_total{method="POST",route="/v1/rerank",status="200"}' in text


def test_openapi_document(client):
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/rerank", "/rerank", "/v2/rerank", "/v1/models", "/health"} <= set(doc["paths"])
    request = doc["components"]["schemas"]["RerankRequest"]
    assert set(request["required"]) == {"query", "documents"}
    assert request["properties"]["top_n"]["anyOf"][0] == {"type": "integer", "exclusiveMinimum": 0}


def test_request_id_is_echoed_or_made(client):
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = client.get("/health").headers["x-request-id"]
    assert len(made) == 32
    r = client.post("/v1/rerank", content=b"{", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.status_code == 400 and r.headers["x-request-id"] != "bad id\twith spaces"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[RunningServer]:
    key_file = tmp_path_factory.mktemp("keys") / "keys"
    key_file.write_text("file-key\n")
    srv = RunningServer("--model", str(XLMR), "--api-key", "flag-key", "--api-key-file", str(key_file),
                        env={"RERANK_API_KEY": "unused-env-key"})
    srv.wait_ready()
    yield srv
    log = srv.stop()
    assert "flag-key" not in log and "file-key" not in log, "API keys never reach the log"


def test_api_keys(keyed_server):
    url = keyed_server.url
    body = {"query": "q", "documents": ["a"]}
    missing = httpx.post(f"{url}/v1/rerank", json=body)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    for key in ("flag-key", "file-key"):
        ok = httpx.post(f"{url}/v1/rerank", json=body, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200, "/health stays public"
    assert httpx.get(f"{url}/v1/models").status_code == 401


def test_the_environment_key_counts_when_no_flag_is_given():
    srv = RunningServer("--model", str(XLMR), env={"RERANK_API_KEY": "env-key"})
    try:
        srv.wait_ready()
        body = {"query": "q", "documents": ["a"]}
        assert httpx.post(f"{srv.url}/v1/rerank", json=body).status_code == 401
        ok = httpx.post(f"{srv.url}/v1/rerank", json=body, headers={"Authorization": "Bearer env-key"})
        assert ok.status_code == 200
    finally:
        srv.stop()


def test_several_models_are_routed_by_name(reference):
    c = case(reference, "panda")
    srv = RunningServer("--model", str(XLMR), "--alias", "first", "--model", str(XLMR), "--alias", "second",
                        "--ctx-size", "16")
    try:
        srv.wait_ready()
        models = httpx.get(f"{srv.url}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["first", "second"]
        body = {"query": c["query"], "documents": c["documents"]}
        first = httpx.post(f"{srv.url}/v1/rerank", json={**body, "model": "first"}).json()
        second = httpx.post(f"{srv.url}/v1/rerank", json={**body, "model": "second"}).json()
        assert first["model"] == "first" and second["model"] == "second"
        assert first["usage"]["prompt_tokens"] == second["usage"]["prompt_tokens"]
        unknown = httpx.post(f"{srv.url}/v1/rerank", json={**body, "model": "third"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["type"] == "model_not_found"
        assert "first, second" in unknown.json()["error"]["message"]
    finally:
        srv.stop()


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v1/reranking", "/reranking"])
def test_tei_texts_are_answered_in_teis_form_on_every_rerank_path(client, reference, path):
    """llama-server answers TEI's body on all four paths; so does this server."""
    c = case(reference, "panda")
    ranks = client.post(path, json={"query": c["query"], "texts": c["documents"], "raw_scores": True}).json()
    assert isinstance(ranks, list) and all(list(r) == ["index", "score"] for r in ranks)
    np.testing.assert_allclose([r["score"] for r in ranks], np.array(c["scores"])[[r["index"] for r in ranks]],
                               atol=TOLERANCE)


def test_a_jina_answer_carries_an_id_as_vllm_and_jina_send(client, reference):
    c = case(reference, "panda")
    ids = [client.post("/v1/rerank", json={"query": c["query"], "documents": c["documents"]}).json()["id"]
           for _ in range(2)]
    assert all(re.fullmatch(r"rerank-[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]


def test_models_is_an_alias_of_v1_models(client):
    assert client.get("/models").json() == client.get("/v1/models").json()


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_max_tokens_per_doc_cuts_every_document(client, path):
    long = "panda bear china " * 20
    usage = [client.post(path, json={"query": "panda", "documents": [long, long], "max_tokens_per_doc": k}).json()
             ["usage"]["prompt_tokens"] for k in (1, 2, 5)]
    assert usage[1] - usage[0] == 2 and usage[2] - usage[1] == 6, "each document gains a token per unit"
    for bad in (0, -1):
        r = client.post(path, json={"query": "panda", "documents": [long], "max_tokens_per_doc": bad})
        assert r.status_code == 400 and "max_tokens_per_doc" in r.json()["error"]["message"]


@pytest.mark.parametrize("path,body", [
    ("/rerank", {"query": "panda", "documents": ["a bear", "hi"], "raw_scores": False}),  # Infinity, no documents
    ("/rerank", {"query": "panda", "texts": ["a bear", "hi"]}),
    ("/rerank", {"query": "panda", "documents": ["a bear", "hi"]}),
    ("/v1/rerank", {"query": "panda", "texts": ["a bear", "hi"], "return_text": True}),
    ("/v1/rerank", {"query": "panda", "documents": ["a bear", "hi"], "return_documents": False}),
    ("/v2/rerank", {"query": "panda", "documents": ["a bear", "hi"]}),
])
def test_every_answer_matches_the_servers_own_schema_for_its_path(client, path, body):
    """A shared path's 200 schema is an anyOf: an Infinity answer without documents is also a valid
    Jina answer, which a oneOf would refuse."""
    import jsonschema

    doc = client.get("/openapi.json").json()
    pointer = path.replace("/", "~1")
    schema = {**doc, "$ref": f"#/paths/{pointer}/post/responses/200/content/application~1json/schema"}
    jsonschema.validate(client.post(path, json=body).json(), schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "Text/Plain; charset=utf-8"])
def test_a_body_sent_as_a_form_or_plain_text_is_415(client, content_type):
    """A page may send these cross-site without a CORS preflight; TEI answers 415 too."""
    body = b'{"query": "panda", "documents": ["a bear"]}'
    for path in ("/v1/rerank", "/rerank", "/v2/rerank", "/v1/score"):
        r = client.post(path, content=body, headers={"content-type": content_type})
        assert r.status_code == 415, (path, r.text)
        assert r.json()["error"]["type"] == "unsupported_media_type_error"
        assert "Content-Type: application/json" in r.json()["error"]["message"]
    assert client.post("/v1/rerank", content=body).status_code == 200, "a body without a type is read as JSON"


def test_the_schema_says_null_means_unset_as_the_server_reads_it(client):
    doc = client.get("/openapi.json").json()
    properties = doc["components"]["schemas"]["RerankRequest"]["properties"]
    assert properties["truncate"] == {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": True}
    assert {"type": "null"} not in properties["query"].get("anyOf", []), "a required field takes no null"
    r = client.post("/v1/rerank", json={"query": "panda", "documents": ["a"], "truncate": None, "normalize": None})
    assert r.status_code == 200
