"""What the integrations people run send, as their sources send it, against the real server.

Dify's and RAGFlow's plugin code and Open WebUI are not on PyPI, so their requests are replayed
exactly (each test cites the file it copies); where a plugin calls a client library that is on
PyPI (Dify's Xinference provider calls `xinference_client`), that library itself is driven.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import requests  # what Open WebUI and the Xinference client send with: it keeps header values as given
from xinference_client.client.restful.restful_client import Client as XinferenceClient
from xinference_client.client.restful.restful_client import RESTfulRerankModelHandle

from .conftest import API_KEY, TOLERANCE, case

KEY = API_KEY
SERVED = "xlmr-tiny"


def sigmoid(scores: list[float]) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(scores)))


# -- Dify -------------------------------------------------------------------------------------

def test_dify_xinference_provider_validates_and_reranks(keyed, reference):
    """dify-official-plugins models/xinference/models/rerank/rerank.py: `Client(base_url, api_key)`
    asks GET /v1/cluster/auth without a key, `get_model(uid)` reads GET /v1/models/{uid} and needs
    `model_type: "rerank"`, then the handle posts to /v1/rerank (with `max_chunks_per_doc: null`,
    `return_len: null`, `kwargs: "{}"`) and the plugin reads `document` and `relevance_score`."""
    c = case(reference, "panda")
    client = XinferenceClient(base_url=keyed.url, api_key=KEY)
    handle = client.get_model(model_uid=SERVED)
    assert isinstance(handle, RESTfulRerankModelHandle), "the model is seen as a reranker"
    response = handle.rerank(documents=c["documents"], query=c["query"], top_n=None, return_documents=True)
    got = {r["index"]: r["relevance_score"] for r in response["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE)
    assert [r["document"]["text"] for r in response["results"]] == \
        [c["documents"][r["index"]] for r in response["results"]]


def test_dify_tei_provider_validates_with_info_and_reranks(keyed, reference):
    """dify-official-plugins models/huggingface_tei/models/helper.py: GET {server}/info with the
    key as a bearer; `model_type`'s first key must be `reranker`, and `max_input_length` and
    `max_client_batch_size` are read. Then POST /rerank `{query, texts, return_text: true}`."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    info = httpx.get(f"{keyed.url}/info", headers=headers)
    assert info.status_code == 200
    body = info.json()
    assert list(body["model_type"]) == ["reranker"]
    assert body["model_id"] == SERVED and body["max_input_length"] == 128 and body["max_client_batch_size"] == 1000
    c = case(reference, "panda")
    results = httpx.post(f"{keyed.url}/rerank", headers=headers,
                         json={"query": c["query"], "texts": c["documents"], "return_text": True}).json()
    assert [r["text"] for r in results] == [c["documents"][r["index"]] for r in results]
    got = {r["index"]: r["score"] for r in results}
    np.testing.assert_allclose([got[i] for i in range(len(c["documents"]))], sigmoid(c["scores"]), atol=TOLERANCE)


# -- RAGFlow and Open WebUI --------------------------------------------------------------------

def test_ragflow_xinference_provider_sends_booleans_as_strings(server, reference):
    """ragflow rag/llm/rerank_model.py `XInferenceRerank`: no Authorization header without a key,
    `"return_documents": "true"` and `"return_len": "true"` as strings; reads results by index."""
    c = case(reference, "panda")
    headers = {"Content-Type": "application/json", "accept": "application/json"}
    r = httpx.post(f"{server.url}/v1/rerank", headers=headers,
                   json={"model": SERVED, "query": c["query"], "return_documents": "true", "return_len": "true",
                         "documents": c["documents"]})
    assert r.status_code == 200, r.text
    rank = np.zeros(len(c["documents"]))
    for d in r.json()["results"]:
        rank[d["index"]] = d["relevance_score"]
    np.testing.assert_allclose(rank, c["scores"], atol=TOLERANCE)
    assert all("text" in d["document"] for d in r.json()["results"]), "\"true\" means true"


def test_open_webui_external_reranker_with_an_empty_key(server, reference):
    """open-webui backend/open_webui/retrieval/models/external.py `ExternalReranker`: `Bearer ` with
    an empty key, model "reranker" by default, `top_n: len(documents)`; maps scores by index."""
    c = case(reference, "many")
    r = requests.post(f"{server.url}/v1/rerank",
                      headers={"Content-Type": "application/json", "Authorization": "Bearer "},
                      json={"model": "reranker", "query": c["query"], "documents": c["documents"],
                            "top_n": len(c["documents"])})
    assert r.status_code == 200, r.text
    scores = [x["relevance_score"] for x in sorted(r.json()["results"], key=lambda x: x["index"])]
    np.testing.assert_allclose(scores, c["scores"], atol=TOLERANCE)


# -- Probes -------------------------------------------------------------------------------------

def test_xinference_cluster_auth_is_public_and_says_whether_keys_are_needed(server, keyed):
    assert httpx.get(f"{server.url}/v1/cluster/auth").json() == {"auth": False}
    assert httpx.get(f"{keyed.url}/v1/cluster/auth").json() == {"auth": True}


def test_describing_one_model_needs_the_key_and_names_a_served_model(keyed):
    assert httpx.get(f"{keyed.url}/v1/models/{SERVED}").status_code == 401
    headers = {"Authorization": f"Bearer {KEY}"}
    body = httpx.get(f"{keyed.url}/v1/models/{SERVED}", headers=headers).json()
    assert body["id"] == SERVED and body["object"] == "model" and body["model_type"] == "rerank"
    missing = httpx.get(f"{keyed.url}/v1/models/other", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "model_not_found"


def test_tei_info_needs_the_key_as_in_tei(keyed):
    assert httpx.get(f"{keyed.url}/info").status_code == 401


# -- Keys and harmless variations ----------------------------------------------------------------

@pytest.mark.parametrize("header,status", [
    (f"Bearer {KEY}", 200),
    (KEY, 200),                          # LlamaIndex's TEI postprocessor: the key without a scheme
    (f"bearer   {KEY}  ", 200),
    ("Bearer wrong", 401),
    ("wrong", 401),
    ("Bearer None", 401),
])
def test_keys_with_and_without_a_scheme(keyed, header, status):
    r = requests.post(f"{keyed.url}/v1/rerank", headers={"Authorization": header},
                   json={"query": "q", "documents": ["a"]})
    assert r.status_code == status


@pytest.mark.parametrize("header", ["Bearer None", "Bearer ", "Bearer fake-api-key"])
def test_placeholder_keys_pass_when_no_keys_are_configured(server, header):
    r = requests.post(f"{server.url}/v1/rerank", headers={"Authorization": header},
                   json={"query": "q", "documents": ["a"]})
    assert r.status_code == 200


def test_a_wrong_key_with_a_large_body_still_reads_its_401(keyed):
    """The 401 is sent before the body is read; the body is drained so the answer arrives."""
    r = httpx.post(f"{keyed.url}/v1/rerank", headers={"Authorization": "Bearer wrong"},
                   json={"query": "q", "documents": ["a" * 1000] * 2000})
    assert r.status_code == 401


def test_nulls_strings_and_unknown_fields_are_accepted(server, reference):
    """Nulls for unset fields (Haystack's `top_n`, Dify's `max_chunks_per_doc`), string booleans
    and numbers (RAGFlow), and fields other servers define are harmless."""
    c = case(reference, "panda")
    body = {"model": None, "query": c["query"], "documents": c["documents"], "top_n": "2",
            "return_documents": "false", "normalize": None, "truncate": "true", "instruction": None,
            "max_chunks_per_doc": None, "return_len": None, "kwargs": "{}", "raw_scores": False}
    r = httpx.post(f"{server.url}/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and all("document" not in x for x in results)
    assert results[0]["relevance_score"] == pytest.approx(max(c["scores"]), abs=TOLERANCE)


def test_tei_top_n_cuts_the_answer(server, reference):
    """litellm's `huggingface/` provider sends TEI's body with `top_n` and expects the cut."""
    c = case(reference, "many")
    r = httpx.post(f"{server.url}/rerank", json={"query": c["query"], "texts": c["documents"], "top_n": 2,
                                                 "raw_scores": True, "truncation_direction": "Right"})
    assert [x["index"] for x in r.json()] == list(np.argsort(c["scores"])[::-1][:2])
