"""Cohere's `POST /v2/rerank`: scores in [0, 1], long documents in Cohere's chunks."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from ..jobs import RerankJob, RerankOutcome
from . import Dialect
from .shared import NonEmptyStr, TextDocument, TopN, document_texts

# Cohere's documented default for `max_tokens_per_doc`.
MAX_TOKENS_PER_DOC = 4096


class CohereRerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /v2/rerank`: Cohere's v2 API."""

    model: str | None = None
    query: NonEmptyStr
    documents: Annotated[list[str | TextDocument], msgspec.Meta(min_length=1)]
    top_n: TopN | None = None
    max_tokens_per_doc: Annotated[int, msgspec.Meta(gt=0)] | None = None


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


def to_job(req: CohereRerankRequest) -> RerankJob:
    """Cohere's long documents: cut to max_tokens_per_doc, then scored in non-overlapping chunks."""
    return RerankJob(query=req.query, documents=document_texts(req.documents), top_n=req.top_n, probabilities=True,
                     max_doc_tokens=req.max_tokens_per_doc or MAX_TOKENS_PER_DOC, long_documents="chunks")


def to_response(req: CohereRerankRequest, served_name: str, outcome: RerankOutcome) -> CohereRerankResponse:
    meta = CohereMeta(
        api_version=CohereApiVersion(version="2"),
        billed_units=CohereBilledUnits(search_units=1),
        tokens=CohereTokens(input_tokens=outcome.prompt_tokens, output_tokens=0),
    )
    results = [CohereResult(index=r.index, relevance_score=r.score) for r in outcome.ranked]
    return CohereRerankResponse(id=str(uuid.uuid4()), results=results, meta=meta)


COHERE = Dialect("cohere", CohereRerankRequest, CohereRerankResponse, to_job, to_response)
