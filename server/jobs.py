"""What every dialect asks of a model and gets back, in one shape: the request's side of the
boundary (server/service.py), free of HTTP and of llama.cpp."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from .engine.pairs import Side
from .engine.windows import LongDocuments


class RerankJob(msgspec.Struct, frozen=True, kw_only=True):
    """What every dialect asks for, in one shape."""

    query: str
    documents: Sequence[str]
    top_n: int | None = None
    normalize: bool | None = False
    """llama-box's min-max normalisation with two anchor pairs; None: the server's default."""
    probabilities: bool = False
    """Scores in [0, 1]: the sigmoid of a classifier's logit (Cohere, TEI); Qwen3's P(yes) as it is."""
    truncate: bool = True
    max_doc_tokens: int | None = None
    max_query_tokens: int | None = None
    truncation_side: Side = "right"
    """Which end of a document is cut, by `max_doc_tokens` or to fit the context."""
    instruction: str | None = None
    timeout: float | None = None
    """Seconds the client waits for the answer; admission refuses a job that could not make it."""
    long_documents: LongDocuments | Literal["chunks"] | None = None
    """How a document longer than its pair's room is scored; None: the model's default. `chunks`:
    Cohere's non-overlapping windows of the whole context."""


class RankedDocument(msgspec.Struct, frozen=True):
    index: int
    score: float


class RerankOutcome(msgspec.Struct, frozen=True):
    ranked: list[RankedDocument]
    prompt_tokens: int
