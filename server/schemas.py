"""Wire formats: the request and response Structs of every endpoint, and the error envelope.

Validation lives in the types: `msgspec.json.decode(body, type=RerankRequest)` either returns a
valid request or raises a ValidationError whose message names the field (``at `$.top_n```).
Responses are Structs too, so their keys come out in declaration order.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class TextDocument(msgspec.Struct, forbid_unknown_fields=False):
    """A document given as an object, as Jina and llama-box accept."""

    text: str


class RerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /v1/rerank`: the Jina / llama-box request."""

    query: NonEmptyStr
    documents: Annotated[list[str | TextDocument], msgspec.Meta(min_length=1)]
    model: str | None = None
    top_n: Annotated[int, msgspec.Meta(gt=0)] | None = None
    return_documents: bool = True
    normalize: bool = False
    truncate: bool = True
    instruction: NonEmptyStr | None = None
    """Task instruction for models whose template has one (Qwen3-Reranker); replaces the default."""
    long_documents: Literal["truncate", "windows"] | None = None
    """A document longer than the context: cut at its end, or scored by its best window; default: the model's."""

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class TEIRerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /rerank` with `texts`: Hugging Face Text Embeddings Inference."""

    query: NonEmptyStr
    texts: Annotated[list[str], msgspec.Meta(min_length=1)]
    top_n: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """Not in TEI's own API; litellm's `huggingface/` provider sends it and expects the cut."""
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = True
    long_documents: Literal["truncate", "windows"] | None = None


class TEIRank(msgspec.Struct, omit_defaults=True):
    index: int
    score: float
    text: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class InfinityRerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /rerank` with `documents` and `raw_scores`: Infinity's API (infinity_client's
    `RerankInput`), which langchain-community's `InfinityRerank` speaks."""

    query: NonEmptyStr
    documents: Annotated[list[str], msgspec.Meta(min_length=1)]
    model: str | None = None
    top_n: Annotated[int, msgspec.Meta(gt=0)] | None = None
    return_documents: bool = False
    raw_scores: bool = False


class InfinityResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    relevance_score: float
    index: int
    document: str | None = None


class InfinityRerankResponse(msgspec.Struct, kw_only=True):
    """infinity_client's `ReRankResult`: it refuses any `object` but "rerank"."""

    object: str = "rerank"
    results: list[InfinityResult]
    model: str
    usage: Usage
    id: str
    created: int


class CohereRerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /v2/rerank`: Cohere's v2 API."""

    model: str | None = None
    query: NonEmptyStr
    documents: Annotated[list[str | TextDocument], msgspec.Meta(min_length=1)]
    top_n: Annotated[int, msgspec.Meta(gt=0)] | None = None
    max_tokens_per_doc: Annotated[int, msgspec.Meta(gt=0)] | None = None

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class CohereResult(msgspec.Struct):
    index: int
    relevance_score: float


class CohereApiVersion(msgspec.Struct):
    version: str


class CohereBilledUnits(msgspec.Struct):
    search_units: int


class CohereTokens(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class CohereMeta(msgspec.Struct):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    tokens: CohereTokens


class CohereRerankResponse(msgspec.Struct):
    id: str
    results: list[CohereResult]
    meta: CohereMeta


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


class TEIClassifier(msgspec.Struct):
    id2label: dict[str, str]
    label2id: dict[str, int]


class TEIModelType(msgspec.Struct):
    reranker: TEIClassifier


class TEIInfo(msgspec.Struct):
    """`GET /info` in TEI's shape (router/src/lib.rs `Info`): Dify's TEI provider checks that
    `model_type`'s key is `reranker` and reads the limits."""

    model_id: str
    model_sha: str | None
    model_dtype: str
    served_model_name: str
    model_type: TEIModelType
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    sha: str | None
    docker_label: str | None


class ModelList(msgspec.Struct):
    object: str
    data: list[ModelCard]


class ResultDocument(msgspec.Struct):
    text: str


class RerankResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Key order of the seed documents; `document` is left out when not asked for."""

    index: int
    document: ResultDocument | None = None
    relevance_score: float


class RerankResponse(msgspec.Struct):
    model: str
    object: str
    results: list[RerankResult]
    usage: Usage


class Health(msgspec.Struct):
    status: str


class ErrorDetail(msgspec.Struct):
    code: int
    message: str
    type: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail
