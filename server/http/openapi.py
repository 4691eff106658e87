"""`GET /openapi.json`: an OpenAPI 3.1 document generated from the route table and the msgspec
schemas of its dialects."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import msgspec

from .schemas import ErrorBody

REF = "#/components/schemas/{name}"


class DocumentedOperation(Protocol):
    """What the document needs of an endpoint (routes.Operation)."""

    method: str
    path: str
    """Starlette's path; a parameter's convertor (`{model:path}`) is not part of OpenAPI's."""
    summary: str
    requests: tuple[Any, ...]
    responses: tuple[Any, ...]


ERROR_STATUSES = {"400": "Invalid request", "401": "Missing or invalid API key", "404": "Unknown model",
                  "413": "Request too large", "415": "Body not sent as JSON", "503": "Loading or overloaded"}


def _null_means_unset(schema: dict[str, Any]) -> None:
    """A request's optional fields also take `null`, which the server reads as unset (clients send
    `"top_n": null`); the schema says so, as the server behaves."""
    required = set(schema.get("required", ()))
    for name, field_schema in schema.get("properties", {}).items():
        alternatives = field_schema.get("anyOf", [field_schema])
        if name not in required and {"type": "null"} not in alternatives:
            default = {"default": field_schema.pop("default")} if "default" in field_schema else {}
            schema["properties"][name] = {"anyOf": [field_schema, {"type": "null"}], **default}


def openapi_document(operations: Sequence[DocumentedOperation], public: Collection[str] = (),
                     keys: bool = True, title: str = "rerank-server", version: str = "0.1.0") -> dict[str, Any]:
    """`keys`: whether the server requires API keys; only then is a bearer scheme declared, and
    `public` names the paths answered without one. Without keys no lock shows on /docs (as TEI
    and vLLM declare none)."""
    types = list(dict.fromkeys(t for op in operations for t in (*op.requests, *op.responses)))
    schemas, components = msgspec.json.schema_components([*types, ErrorBody], ref_template=REF)
    schema_of = dict(zip([*types, ErrorBody], schemas))
    for request_type in dict.fromkeys(t for op in operations for t in op.requests):
        _null_means_unset(components[request_type.__name__])

    def content(alternatives: tuple[Any, ...]) -> dict[str, Any]:
        options = [schema_of[t] for t in alternatives]
        # anyOf, not oneOf: an answer may match several dialects' shapes (Infinity's without documents
        # is a valid Jina answer too).
        return {"application/json": {"schema": options[0] if len(options) == 1 else {"anyOf": options}}}

    error = {"content": content((ErrorBody,))}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        method, summary, request, response = op.method, op.summary, op.requests, op.responses
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", op.path)
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": {"description": "OK", "content": content(response)},
                          **{code: {"description": text, **error} for code, text in ERROR_STATUSES.items()}},
        }
        if keys and path in public:
            operation["security"] = []
        if "{model}" in path:
            operation["parameters"] = [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
        if request:
            operation["requestBody"] = {"required": True, "content": content(request)}
        paths.setdefault(path, {})[method] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }
    if keys:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
