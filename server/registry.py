"""The models this process serves, loaded in the background so the routes can say so meanwhile:
the in-process implementation of the rerank service (server/service.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .engine.context import RerankEngine
from .jobs import RerankJob, RerankOutcome
from .provision.plan import ModelPlan
from .rerank import ServedModel, rerank
from .scheduler import BatchObserver
from .service import LoadState, ModelInfo, known_name, served_name, unavailable

log = logging.getLogger(__name__)


class ModelSlot:
    """One planned model: its plan, its state, and its engine once loaded."""

    def __init__(self, plan: ModelPlan) -> None:
        self.plan = plan
        self.name = plan.name
        self.state = LoadState.LOADING
        self.error: str | None = None
        self.model: ServedModel | None = None
        self.loaded_at = 0
        self.load_seconds = 0.0

    def load(self, on_batch: BatchObserver | None = None, max_queued_pairs: int | None = None) -> None:
        started = time.perf_counter()
        try:
            engine = RerankEngine(self.plan.info, self.plan.settings)
            self.model = ServedModel(self.name, engine, on_batch, max_queued_pairs, self.plan.long_documents,
                                     self.plan.windows)
        except Exception as exc:
            self.state, self.error = LoadState.FAILED, str(exc)
            log.error("cannot serve %s: %s", self.name, exc)
            return
        self.load_seconds = time.perf_counter() - started
        self.loaded_at = int(time.time())
        self.state = LoadState.READY
        log.info("loaded %s from %s in %.1fs", self.name, self.plan.source.path, self.load_seconds)

    def unload(self) -> None:
        """Free the engine (a model evicted from a Ray replica); the slot can load again."""
        if self.model is not None:
            self.model.close()
            self.model = None
            self.state = LoadState.LOADING

    def describe(self) -> ModelInfo:
        """The context and score kind are the loaded engine's (the file decides them)."""
        source, info, settings = self.plan.source, self.plan.info, self.plan.settings
        engine = self.model.engine if self.model else None
        return ModelInfo(
            name=self.name, loaded_at=self.loaded_at,
            family=source.entry.family if source.entry else None,
            architecture=info.architecture,
            repository=source.repository,
            file=source.file or Path(source.path).name,
            quantization=source.quantization or info.weight_type,
            converted=source.converted,
            context_length=engine.max_pair_tokens if engine else (settings.ctx_size or 0),
            batch_tokens=settings.batch_tokens,
            long_documents=self.plan.long_documents,
            scores=engine.score_kind if engine else "logit",
        )


class ModelRegistry:
    """Owns the served models; requests ask for one by the name they sent."""

    def __init__(self, slots: Sequence[ModelSlot], max_queued_pairs: int | None = None) -> None:
        names = [slot.name for slot in slots]
        if len(set(names)) != len(names):
            raise ValueError(f"two served models share a name: {names}; give each an --alias")
        self.slots = {slot.name: slot for slot in slots}
        self.max_queued_pairs = max_queued_pairs

    @property
    def state(self) -> LoadState:
        states = {slot.state for slot in self.slots.values()}
        for state in (LoadState.FAILED, LoadState.LOADING):
            if state in states:
                return state
        return LoadState.READY

    @property
    def error(self) -> str | None:
        return next((s.error for s in self.slots.values() if s.error), None)

    def load(self, on_failure: Callable[[], None] | None = None,
             on_batch: BatchObserver | None = None) -> None:
        """Load every model (blocking: run it in a thread); the first failure stops the loading."""
        for slot in self.slots.values():
            slot.load(on_batch, self.max_queued_pairs)
            if slot.state is LoadState.FAILED:
                if on_failure:
                    on_failure()
                return

    async def start(self, on_failure: Callable[[], None] | None = None,
                    on_batch: BatchObserver | None = None) -> Mapping[str, float]:
        await asyncio.to_thread(self.load, on_failure, on_batch)
        return {name: slot.load_seconds for name, slot in self.slots.items() if slot.model}

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    async def rerank(self, model: str | None, job: RerankJob) -> tuple[str, RerankOutcome]:
        served = self.get(model)
        return served.name, await rerank(served, job)

    def get(self, requested: str | None) -> ServedModel:
        slot = self.slots[served_name(self.slots, requested)]
        if slot.model is None:
            raise unavailable(slot.state, slot.error)
        return slot.model

    def check_ready(self) -> None:
        """Raise ModelNotReady, saying why not every model can serve yet."""
        if self.state is not LoadState.READY:
            raise unavailable(self.state, self.error)

    def queue_depths(self) -> dict[str, int]:
        return {name: slot.model.scheduler.queued_pairs for name, slot in self.slots.items() if slot.model}

    def models(self) -> list[ModelInfo]:
        """The served models once they can serve; until then ModelNotReady, as llama-server answers,
        so a probe of /v1/models (GPUStack's llama.cpp entry uses one) waits for the load."""
        self.check_ready()
        return [slot.describe() for slot in self.slots.values()]

    def model(self, name: str | None) -> ModelInfo:
        """The model `name` (the first model when None), or ModelNotFound; ModelNotReady while loading."""
        self.check_ready()
        return self.slots[next(iter(self.slots)) if name is None else known_name(self.slots, name)].describe()

    def close(self) -> None:
        for slot in self.slots.values():
            slot.unload()
