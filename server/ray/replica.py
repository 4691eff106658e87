"""A replica of a model deployment on Ray Serve: it owns the engines, as one process does.

Each replica owns its engines and their schedulers, so the requests that reach one replica are
batched together as in one process. A replica holds either one model, loaded when it starts (a
per-model deployment), or up to `models_per_replica` of a list, loaded on a request's first call
and evicted least recently used (Ray Serve's model multiplexing routes a request to a replica that
has its model). The gateway reaches it through server/ray/gateway.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec
from ray import serve

from ..config import ServerConfig
from ..engine.servable import ModelLoadError
from ..jobs import RerankJob, RerankOutcome
from ..provision.catalog import load_catalog
from ..provision.plan import model_plans
from ..registry import ModelRegistry, ModelSlot
from ..rerank import ServedModel, rerank
from ..service import LoadState, ModelInfo, unavailable

log = logging.getLogger(__name__)

# How often an evicted model checks whether its last request has finished.
DRAIN_POLL_SECONDS = 0.05


class ReplicaStatus(msgspec.Struct, frozen=True):
    replica: str
    requests: int
    """Rerank calls answered since the replica started."""
    loaded: list[str]
    queued_pairs: int
    """Pairs waiting in this replica's schedulers (the gateway's /metrics cannot see them)."""


class _Loaded:
    """A model in a replica's multiplexing cache. Ray Serve calls `__del__` when it evicts the
    model; the engine is freed once the requests already on it have finished."""

    def __init__(self, slot: ModelSlot, drain_seconds: float) -> None:
        self.slot = slot
        self.model = slot.model
        self.drain_seconds = drain_seconds
        self.in_flight = 0

    def __del__(self) -> None:
        # Called twice (by Ray, then by the collector), maybe after the slot loaded again for a
        # later request: only the engine this object loaded is freed, once.
        if self.slot.model is not self.model:
            return
        deadline = time.monotonic() + self.drain_seconds
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(DRAIN_POLL_SECONDS)
        if self.slot.model is self.model:
            self.slot.unload()


class ModelReplica:
    """One replica of a model deployment (wrapped by `serve.deployment` in server/ray/app.py)."""

    def __init__(self, config: ServerConfig, models_per_replica: int | None = None) -> None:
        logging.basicConfig(level=config.log_level.upper())
        slots = [ModelSlot(plan) for plan in model_plans(config, load_catalog(config.catalog))]
        self.registry = ModelRegistry(slots, max_queued_pairs=config.max_queue_pairs)
        self.drain_seconds = config.request_timeout
        self.served_requests = 0
        self.multiplexed = models_per_replica is not None
        if self.multiplexed:
            # A function of its own: Ray keeps its model cache as an attribute of what it wraps,
            # which a bound method cannot hold.
            async def load(name: str) -> _Loaded:
                return await self._load(name)

            self._cached: Callable[[str], Awaitable[_Loaded]] = serve.multiplexed(
                max_num_models_per_replica=models_per_replica)(load)
        else:
            # A replica is ready when its model is: the load happens here, before Serve routes to it.
            self.registry.load()
            if self.registry.state is LoadState.FAILED:
                raise ModelLoadError(str(self.registry.error))

    async def _load(self, name: str) -> _Loaded:
        slot = self.registry.slots[name]
        await asyncio.to_thread(slot.load, None, self.registry.max_queued_pairs)
        if slot.model is None:
            raise ModelLoadError(f"cannot load {name}: {slot.error}")
        return _Loaded(slot, self.drain_seconds)

    async def rerank(self, name: str, job: RerankJob) -> RerankOutcome:
        self.served_requests += 1
        if not self.multiplexed:
            return await rerank(self.registry.get(name), job)
        loaded = await self._cached(name)
        loaded.in_flight += 1
        try:
            return await rerank(_served(loaded.slot), job)
        finally:
            loaded.in_flight -= 1

    async def describe(self, name: str) -> tuple[ModelInfo, float]:
        """The model's description and load time, from the loaded engine (it describes the
        context and score kind the engine found in the file)."""
        if self.multiplexed:
            await self._cached(name)
        slot = self.registry.slots[name]
        return slot.describe(), slot.load_seconds

    def status(self) -> ReplicaStatus:
        """Which replica this is, what it has served and which models it holds now."""
        return ReplicaStatus(replica=serve.get_replica_context().replica_id.unique_id,
                             requests=self.served_requests,
                             loaded=[name for name, slot in self.registry.slots.items() if slot.model],
                             queued_pairs=sum(self.registry.queue_depths().values()))

    def __del__(self) -> None:
        self.registry.close()


def _served(slot: ModelSlot) -> ServedModel:
    if slot.model is None:
        raise unavailable(slot.state, slot.error)
    return slot.model
