"""This server's answers against the peers' own published OpenAPI documents (TEI, Infinity, Jina,
Cohere; tests/fixtures/peers/, copied from ../shared/peers/, each naming its repository and commit).

For each peer operation this server implements, a request that the peer's request schema accepts is
sent here, and the answer must validate against the peer's 200 schema. What does not is listed in
DIFFERENCES with the reason, and checked to still fail, so the list stays true.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

PEERS = Path(__file__).parent / "fixtures" / "peers"
QUERY, DOCUMENTS = "What is a panda?", ["hi", "it is a bear", "The giant panda is a bear species endemic to China."]

# (peer, the peer's path, method, this server's path, body)
OPERATIONS = [
    ("tei", "/rerank", "post", "/rerank", {"query": QUERY, "texts": DOCUMENTS, "return_text": True}),
    ("tei", "/rerank", "post", "/v1/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}),
    ("tei", "/info", "get", "/info", None),
    ("infinity", "/rerank", "post", "/rerank", {"query": QUERY, "documents": DOCUMENTS, "raw_scores": False,
                                                "return_documents": True, "top_n": 2}),
    ("infinity", "/rerank", "post", "/rerank", {"query": QUERY, "documents": DOCUMENTS, "raw_scores": False}),
    ("infinity", "/models", "get", "/models", None),
    ("jina", "/v1/rerank", "post", "/v1/rerank", {"model": "jina-reranker-v2-base-multilingual", "query": QUERY,
                                                  "documents": DOCUMENTS, "top_n": 2, "return_documents": True}),
    ("jina", "/v1/rerank", "post", "/v1/rerank", {"model": "jina-reranker-v2-base-multilingual", "query": QUERY,
                                                  "documents": DOCUMENTS, "return_documents": False}),
    ("cohere", "/v2/rerank", "post", "/v2/rerank", {"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS,
                                                    "top_n": 2}),
]

DIFFERENCES = {
    ("infinity", "/models"): "Infinity's model objects require its `stats` object and `owned_by: infinity`; this "
                             "server answers OpenAI's model list (owned_by rerank-server), which GPUStack and "
                             "the OpenAI-style clients read. Infinity's rerank clients never ask /models.",
}


def document(peer: str) -> dict[str, Any]:
    return _nullable_as_null(json.loads((PEERS / f"{peer}.json").read_text()))


def _nullable_as_null(node: Any) -> Any:
    """TEI's document writes OpenAPI 3.0's `nullable: true` inside a 3.1 document; JSON Schema reads
    that as `null` allowed, which is what TEI means (its own answers carry those nulls)."""
    if isinstance(node, dict):
        node = {key: _nullable_as_null(value) for key, value in node.items()}
        if node.get("nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [_nullable_as_null(item) for item in node]
    return node


def schema(doc: dict[str, Any], path: str, method: str, part: str) -> dict[str, Any]:
    operation = doc["paths"][path][method]
    if part == "request":
        found = operation["requestBody"]["content"]["application/json"]["schema"]
    else:
        found = operation["responses"]["200"]["content"]["application/json"]["schema"]
    # The whole document travels along, so that its `#/components/...` references resolve.
    return {**copy.deepcopy(doc), **found}


def validate(instance: Any, against: dict[str, Any]) -> None:
    jsonschema.validate(instance, against, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("peer,peer_path,method,path,body", OPERATIONS,
                         ids=[f"{o[0]} {o[2].upper()} {o[3]}" for o in OPERATIONS])
def test_answers_validate_against_the_peers_published_schema(client, peer, peer_path, method, path, body):
    doc = document(peer)
    if body is not None:
        validate(body, schema(doc, peer_path, method, "request"))  # the request is one the peer documents
    r = client.request(method.upper(), path, json=body)
    assert r.status_code == 200, r.text
    answer_schema = schema(doc, peer_path, method, "response")
    if (peer, peer_path) in DIFFERENCES:
        with pytest.raises(jsonschema.ValidationError):
            validate(r.json(), answer_schema)
    else:
        validate(r.json(), answer_schema)


def test_each_peer_document_names_its_source():
    for path in PEERS.glob("*.json"):
        source = json.loads(path.read_text())["source"]
        assert source["repository"] and len(source["commit"]) == 40, path.name


def test_the_schema_check_fails_on_a_wrong_answer():
    doc = document("tei")
    with pytest.raises(jsonschema.ValidationError):
        validate([{"index": 0}], schema(doc, "/rerank", "post", "response"))  # no score
    with pytest.raises(jsonschema.ValidationError):
        validate({"id": "x", "results": [{"index": "0", "relevance_score": 1.0}]},
                 schema(document("cohere"), "/v2/rerank", "post", "response"))

