"""Wire formats of the endpoints that are not a dialect's rerank: models, health, errors.

The dialects' request and response Structs are in server/dialects/. Responses are Structs, so their
keys come out in declaration order.
"""

from __future__ import annotations

import msgspec


class ModelMeta(msgspec.Struct):
    family: str | None
    architecture: str
    repository: str | None
    """The Hugging Face repository the file came from (a checkpoint, when `converted`)."""
    file: str
    quantization: str | None
    converted: bool
    context_length: int
    batch_tokens: int
    long_documents: str
    """`truncate` or `windows`: how this model scores a document longer than its context by default."""
    scores: str


class ModelCard(msgspec.Struct):
    """An entry of `GET /v1/models`, as OpenAI lists models."""

    id: str
    object: str
    created: int
    owned_by: str
    meta: ModelMeta


class ModelDescription(ModelCard, kw_only=True):
    """`GET /v1/models/{model}`: the OpenAI model object plus Xinference's `model_type`, which Dify's
    Xinference provider reads to accept a reranker."""

    model_type: str = "rerank"


class ClusterAuth(msgspec.Struct):
    """`GET /v1/cluster/auth`, Xinference's probe: whether requests need a key."""

    auth: bool


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelCard]


class Health(msgspec.Struct):
    status: str


class ErrorDetail(msgspec.Struct):
    code: int
    message: str
    type: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail
