"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the msgspec schemas of the routes."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import msgspec

from .schemas import (
    ClusterAuth,
    CohereRerankRequest,
    CohereRerankResponse,
    ErrorBody,
    Health,
    InfinityRerankRequest,
    InfinityRerankResponse,
    ModelDescription,
    ModelList,
    RerankRequest,
    RerankResponse,
    TEIInfo,
    TEIRank,
    TEIRerankRequest,
)

REF = "#/components/schemas/{name}"

# (method, path, summary, request types, response types); several types mean any one of them.
OPERATIONS: list[tuple[str, str, str, tuple[Any, ...], tuple[Any, ...]]] = [
    ("post", "/v1/rerank", "Rerank documents (Jina / llama-box)", (RerankRequest,), (RerankResponse,)),
    ("post", "/v1/reranking", "Rerank documents (alias of /v1/rerank)", (RerankRequest,), (RerankResponse,)),
    ("post", "/reranking", "Rerank documents (alias of /v1/rerank)", (RerankRequest,), (RerankResponse,)),
    ("post", "/rerank", "Rerank documents (Jina body with `documents`, TEI body with `texts`, or Infinity "
     "body with `raw_scores`)", (RerankRequest, TEIRerankRequest, InfinityRerankRequest),
     (RerankResponse, list[TEIRank], InfinityRerankResponse)),
    ("post", "/v2/rerank", "Rerank documents (Cohere v2)", (CohereRerankRequest,), (CohereRerankResponse,)),
    ("get", "/v1/models", "List the served models", (), (ModelList,)),
    ("get", "/v1/models/{model}", "Describe one model (OpenAI, with Xinference's model_type)", (),
     (ModelDescription,)),
    ("get", "/info", "The first model, as TEI describes itself", (), (TEIInfo,)),
    ("get", "/v1/cluster/auth", "Whether requests need an API key (Xinference's probe)", (), (ClusterAuth,)),
    ("get", "/health", "Readiness", (), (Health,)),
]

ERROR_STATUSES = {"400": "Invalid request", "401": "Missing or invalid API key", "404": "Unknown model",
                  "413": "Request too large", "503": "Loading or overloaded"}


def openapi_document(public: Collection[str] = (), title: str = "rerank-server",
                     version: str = "0.1.0") -> dict[str, Any]:
    """`public`: the paths answered without an API key."""
    types = list(dict.fromkeys(t for _, _, _, req, resp in OPERATIONS for t in (*req, *resp)))
    schemas, components = msgspec.json.schema_components([*types, ErrorBody], ref_template=REF)
    schema_of = dict(zip([*types, ErrorBody], schemas))

    def content(alternatives: tuple[Any, ...]) -> dict[str, Any]:
        options = [schema_of[t] for t in alternatives]
        return {"application/json": {"schema": options[0] if len(options) == 1 else {"oneOf": options}}}

    error = {"content": content((ErrorBody,))}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, request, response in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": {"description": "OK", "content": content(response)},
                          **{code: {"description": text, **error} for code, text in ERROR_STATUSES.items()}},
        }
        if path in public:
            operation["security"] = []
        if "{model}" in path:
            operation["parameters"] = [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
        if request:
            operation["requestBody"] = {"required": True, "content": content(request)}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
