"""Wire formats: the request and response Structs of every endpoint, and the error envelope.

Validation lives in the types: `msgspec.json.decode(body, type=RerankRequest)` either returns a
valid request or raises a ValidationError whose message names the field (``at `$.top_n```).
Responses are Structs too, so their keys come out in declaration order.
"""

from __future__ import annotations

from typing import Annotated

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

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class ResultDocument(msgspec.Struct):
    text: str


class RerankResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Key order of the seed documents; `document` is left out when not asked for."""

    index: int
    document: ResultDocument | None = None
    relevance_score: float


class Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


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
