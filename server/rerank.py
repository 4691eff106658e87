"""Reranking as the dialects share it: pairs in, ranked scores and token usage out.

Routes map their request onto a `RerankJob` and shape a `RerankOutcome` into their response;
this module decides the ranking, the cut to `top_n` and llama-box's normalisation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import msgspec
import numpy as np

from .engine import RerankEngine, shared_prefix_length
from .scheduler import BatchObserver, Scheduler
from .windows import LongDocuments, WindowPlan, cohere_chunks


class RerankJob(msgspec.Struct, frozen=True, kw_only=True):
    """What every dialect asks for, in one shape."""

    query: str
    documents: Sequence[str]
    top_n: int | None = None
    normalize: bool = False
    """llama-box's min-max normalisation with two anchor pairs."""
    probabilities: bool = False
    """Scores in [0, 1]: the sigmoid of a classifier's logit (Cohere, TEI); Qwen3's P(yes) as it is."""
    truncate: bool = True
    max_doc_tokens: int | None = None
    instruction: str | None = None
    long_documents: LongDocuments | Literal["chunks"] | None = None
    """How a document longer than its pair's room is scored; None: the model's default. `chunks`:
    Cohere's non-overlapping windows of the whole context."""


class RankedDocument(msgspec.Struct, frozen=True):
    index: int
    score: float


class RerankOutcome(msgspec.Struct, frozen=True):
    ranked: list[RankedDocument]
    prompt_tokens: int


class ServedModel:
    """A loaded model as requests see it: its served name, engine and scheduler."""

    def __init__(self, name: str, engine: RerankEngine, on_batch: BatchObserver | None = None,
                 max_queued_pairs: int | None = None, long_documents: LongDocuments = "truncate",
                 windows: WindowPlan = WindowPlan()) -> None:
        self.name = name
        self.engine = engine
        self.scheduler = Scheduler(engine, name, on_batch, max_queued_pairs)
        self.long_documents = long_documents
        self.windows = windows

    def window_plan(self, mode: LongDocuments | Literal["chunks"]) -> WindowPlan | None:
        """None when documents are truncated; Cohere's chunks fill the context and do not overlap."""
        if mode == "truncate":
            return None
        return cohere_chunks(self.windows) if mode == "chunks" else self.windows

    def close(self) -> None:
        self.scheduler.close()
        self.engine.close()


async def rerank(model: ServedModel, job: RerankJob) -> RerankOutcome:
    engine = model.engine
    plan = model.window_plan(job.long_documents or model.long_documents)
    # Tokenising 100 documents takes milliseconds of CPU: keep it off the event loop.
    if plan is None:
        pairs = await asyncio.to_thread(engine.prepare_pairs, job.query, job.documents, job.truncate,
                                        job.max_doc_tokens, job.instruction)
        owners = list(range(len(pairs)))
    else:
        pairs, owners = await asyncio.to_thread(engine.prepare_windows, job.query, job.documents, plan,
                                                job.max_doc_tokens, job.instruction)
    anchors = await asyncio.to_thread(engine.anchor_pairs, job.query, job.instruction) if job.normalize else []
    everything = [*pairs, *anchors]
    scores = await model.scheduler.score(everything, shared_prefix_length(everything) if engine.causal else 0)
    prompt_tokens = sum(len(p) for p in pairs) + sum(len(p) for p in anchors)
    # A document scores as its best window (the same order for logits and their sigmoids).
    document_scores = np.full(len(job.documents), -np.inf, dtype=np.float64)
    np.maximum.at(document_scores, owners, scores[: len(pairs)])
    if job.normalize:
        document_scores = normalize_like_llama_box(document_scores, scores[len(pairs)], scores[len(pairs) + 1])
    elif job.probabilities and not engine.scores_are_probabilities:
        document_scores = 1.0 / (1.0 + np.exp(-document_scores))
    return RerankOutcome(ranked=rank(document_scores, job.top_n), prompt_tokens=prompt_tokens)


def rank(scores: np.ndarray, top_n: int | None) -> list[RankedDocument]:
    """Highest score first; equal scores keep request order; at most `top_n`."""
    order = np.argsort(-scores, kind="stable")[:top_n]
    return [RankedDocument(int(i), float(scores[i])) for i in order]


def normalize_like_llama_box(scores: np.ndarray, self_score: float, unknown_score: float) -> np.ndarray:
    """llama-box's `normalize: true`: a min-max map onto [0.001, 0.999] whose ends are set by the
    query scored against itself and against a single unknown token (see shared/REFERENCE.md)."""
    high = max(float(self_score), float(scores.max()))
    low = min(float(unknown_score), float(scores.min()))
    if high - low < 1e-6:
        return scores / high
    return 0.001 + (scores - low) * 0.998 / (high - low)
