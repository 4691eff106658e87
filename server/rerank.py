"""A job's way through a loaded model: its pairs (the engine's layout), their scores (the
model's scheduler), and the ranked documents (scoring.py), with the tokens they took."""

from __future__ import annotations

import asyncio
from typing import Literal

from .engine.context import RerankEngine
from .engine.pairs import shared_prefix_length
from .engine.windows import LongDocuments, WindowPlan, cohere_chunks
from .jobs import RerankJob, RerankOutcome
from .scheduler import BatchObserver, Scheduler
from .scoring import shape_scores


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
        pairs = await asyncio.to_thread(engine.pairs.make, job.query, job.documents, job.truncate,
                                        job.max_doc_tokens, job.instruction, query_tokens=job.max_query_tokens,
                                        side=job.truncation_side)
        owners = list(range(len(pairs)))
    else:
        pairs, owners = await asyncio.to_thread(engine.pairs.windows, job.query, job.documents, plan,
                                                job.max_doc_tokens, job.instruction,
                                                query_tokens=job.max_query_tokens, side=job.truncation_side)
    anchors = await asyncio.to_thread(engine.pairs.anchors, job.query, job.instruction) if job.normalize else []
    everything = [*pairs, *anchors]
    scores = await model.scheduler.score(everything, shared_prefix_length(everything) if engine.causal else 0,
                                         job.timeout)
    prompt_tokens = sum(len(p) for p in pairs) + sum(len(p) for p in anchors)
    ranked = shape_scores(job, engine.score_kind, scores, owners)
    return RerankOutcome(ranked=ranked, prompt_tokens=prompt_tokens)
