"""Jina's and llama-box's `POST /v1/rerank` (and its aliases): raw logits unless `normalize` (the server's
--normalize when unset) or vLLM's `use_activation`."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from ..jobs import RerankJob, RerankOutcome
from . import Dialect
from .shared import NonEmptyStr, TextDocument, TopN, Usage, document_texts, usage


class RerankRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /v1/rerank`: the Jina / llama-box request."""

    query: NonEmptyStr
    documents: Annotated[list[str | TextDocument], msgspec.Meta(min_length=1)]
    model: str | None = None
    top_n: TopN | None = None
    return_documents: bool = True
    normalize: bool | None = None
    """llama-box's [0.001, 0.999] scale; unset: the server's --normalize."""
    truncate: bool = True
    instruction: NonEmptyStr | None = None
    """Task instruction for models whose template has one (Qwen3-Reranker); replaces the default."""
    long_documents: Literal["truncate", "windows"] | None = None
    """A document longer than the context: cut at its end, or scored by its best window; default: the model's."""
    max_tokens_per_doc: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """vLLM's and Cohere's: every document cut to this many tokens before it is paired."""
    max_tokens_per_query: Annotated[int, msgspec.Meta(gt=0)] | None = None
    """vLLM's: the query cut to this many tokens (special tokens not counted) before it is paired."""
    truncation_side: Literal["right", "left"] | None = None
    """vLLM's: which end of a document is cut, by `max_tokens_per_doc` or to fit the context (default right)."""
    use_activation: bool | None = None
    """vLLM's: true gives a classifier's sigmoid, as vLLM does; unset or false, its raw logit (llama-box's)."""

    def __post_init__(self) -> None:
        if self.normalize and self.use_activation:
            raise ValueError("send `normalize` (llama-box's scale) or `use_activation` (sigmoids), not both")


class ResultDocument(msgspec.Struct):
    text: str


class RerankResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Key order of the seed documents; `document` is left out when not asked for."""

    index: int
    document: ResultDocument | None = None
    relevance_score: float


class RerankResponse(msgspec.Struct):
    """llama-box's keys in its order, then `id` (vLLM's RerankResponse requires one, Jina sends one)."""

    model: str
    object: str
    results: list[RerankResult]
    usage: Usage
    id: str


def to_job(req: RerankRequest) -> RerankJob:
    return RerankJob(query=req.query, documents=document_texts(req.documents), top_n=req.top_n,
                     normalize=False if req.use_activation else req.normalize,
                     probabilities=bool(req.use_activation), truncate=req.truncate,
                     instruction=req.instruction, long_documents=req.long_documents,
                     max_doc_tokens=req.max_tokens_per_doc, max_query_tokens=req.max_tokens_per_query,
                     truncation_side=req.truncation_side or "right")


def to_response(req: RerankRequest, served_name: str, outcome: RerankOutcome) -> RerankResponse:
    texts = document_texts(req.documents)
    results = [RerankResult(index=r.index, document=ResultDocument(texts[r.index]) if req.return_documents else None,
                            relevance_score=r.score)
               for r in outcome.ranked]
    return RerankResponse(model=req.model or served_name, object="list", results=results,
                          usage=usage(outcome.prompt_tokens), id=f"rerank-{uuid.uuid4().hex}")


JINA = Dialect("jina", RerankRequest, RerankResponse, to_job, to_response)
