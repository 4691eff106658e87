"""Infinity's `POST /rerank` (infinity_client's `RerankInput`), which langchain-community's
`InfinityRerank` speaks: sigmoid scores unless `raw_scores`, documents as strings."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import msgspec

from ..jobs import RerankJob, RerankOutcome
from . import Dialect
from .shared import NonEmptyStr, TopN, Usage, usage


class InfinityRerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /rerank` with `documents` and `raw_scores`: Infinity's API (infinity_client's
    `RerankInput`), which langchain-community's `InfinityRerank` speaks."""

    query: NonEmptyStr
    documents: Annotated[list[str], msgspec.Meta(min_length=1)]
    model: str | None = None
    top_n: TopN | None = None
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


def to_job(req: InfinityRerankRequest) -> RerankJob:
    return RerankJob(query=req.query, documents=req.documents, top_n=req.top_n, probabilities=not req.raw_scores)


def to_response(req: InfinityRerankRequest, served_name: str, outcome: RerankOutcome) -> InfinityRerankResponse:
    results = [InfinityResult(relevance_score=r.score, index=r.index,
                              document=req.documents[r.index] if req.return_documents else None)
               for r in outcome.ranked]
    return InfinityRerankResponse(results=results, model=req.model or served_name, usage=usage(outcome.prompt_tokens),
                                  id=str(uuid.uuid4()), created=int(time.time()))


INFINITY = Dialect("infinity", InfinityRerankRequest, InfinityRerankResponse, to_job, to_response, marker="raw_scores")
