"""Hugging Face Text Embeddings Inference: `POST /rerank` with `texts`, and `GET /info`."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ..jobs import RerankJob, RerankOutcome
from . import Dialect
from .shared import NonEmptyStr, TopN


class TEIRerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /rerank` with `texts`: Hugging Face Text Embeddings Inference."""

    query: NonEmptyStr
    texts: Annotated[list[str], msgspec.Meta(min_length=1)]
    top_n: TopN | None = None
    """Not in TEI's own API; litellm's `huggingface/` provider sends it and expects the cut."""
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool = True
    truncation_direction: Literal["right", "left", "Right", "Left"] | None = None
    """Which end of a text is cut to fit the context; TEI's wire values are capitalised."""
    long_documents: Literal["truncate", "windows"] | None = None


class TEIRank(msgspec.Struct, omit_defaults=True):
    index: int
    score: float
    text: str | None = None


def to_job(req: TEIRerankRequest) -> RerankJob:
    side = "left" if req.truncation_direction in ("left", "Left") else "right"
    return RerankJob(query=req.query, documents=req.texts, top_n=req.top_n, probabilities=not req.raw_scores,
                     truncate=req.truncate, long_documents=req.long_documents, truncation_side=side)


def to_response(req: TEIRerankRequest, served_name: str, outcome: RerankOutcome) -> list[TEIRank]:
    """TEI's answer is a bare array; scores are sigmoids unless `raw_scores`."""
    return [TEIRank(index=r.index, score=r.score, text=req.texts[r.index] if req.return_text else None)
            for r in outcome.ranked]


TEI = Dialect("tei", TEIRerankRequest, list[TEIRank], to_job, to_response, marker="texts")


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
