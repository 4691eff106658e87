"""Models in Ray Serve replicas: the replica that owns the engines (`ModelReplica`) and the rerank
service the gateway's routes call to reach them (`RayModels`, server/service.py's interface).

Each replica owns its engines and their schedulers, so the requests that reach one replica are
batched together as in one process. A replica holds either one model, loaded when it starts (a
per-model deployment), or up to `models_per_replica` of a list, loaded on a request's first call
and evicted least recently used (Ray Serve's model multiplexing routes a request to a replica that
has its model).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from .catalog import load_catalog
from .config import ServerConfig
from .engine import ModelLoadError
from .errors import ApiError
from .registry import LoadState, ModelRegistry, ModelSlot, configured_slots, unavailable
from .rerank import RerankJob, RerankOutcome, ServedModel, rerank
from .scheduler import BatchObserver
from .schemas import ModelCard

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
    """One replica of a model deployment (wrapped by `serve.deployment` in server/ray_app.py)."""

    def __init__(self, config: ServerConfig, models_per_replica: int | None = None) -> None:
        logging.basicConfig(level=config.log_level.upper())
        slots = configured_slots(config, load_catalog(config.catalog))
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

    async def describe(self, name: str) -> tuple[ModelCard, float]:
        """The model's card and load time, from the loaded engine (a card describes the context
        and score kind the engine found in the file)."""
        if self.multiplexed:
            await self._cached(name)
        slot = self.registry.slots[name]
        return slot.card(), slot.load_seconds

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


class RayModels:
    """The gateway's side: each served name maps to the handle of the deployment holding it."""

    def __init__(self, handles: Mapping[str, DeploymentHandle], multiplexed: bool) -> None:
        self.handles = dict(handles)
        self.multiplexed = multiplexed
        self.cards: dict[str, ModelCard] = {}
        self.state = LoadState.LOADING
        self.error: str | None = None

    async def start(self, on_failure: Callable[[], None] | None = None,
                    on_batch: BatchObserver | None = None) -> Mapping[str, float]:
        """Wait for every model's deployment to answer; the batches happen in the replicas, so
        `on_batch` is not called here."""
        load_seconds = {}
        try:
            for name in self.handles:
                self.cards[name], load_seconds[name] = await self._handle(name).describe.remote(name)
        except Exception as exc:  # any failure of a deployment: the gateway reports it on /health
            self.state, self.error = LoadState.FAILED, str(exc)
            log.error("the model deployments did not start: %s", exc)
            if on_failure:
                on_failure()
            return {}
        self.state = LoadState.READY
        return load_seconds

    async def stop(self) -> None:
        """The replicas belong to Ray Serve, which stops them."""

    def check_ready(self) -> None:
        if self.state is not LoadState.READY:
            raise unavailable(self.state, self.error)

    async def rerank(self, model: str | None, job: RerankJob) -> tuple[str, RerankOutcome]:
        self.check_ready()
        name = self._name(model)
        response = self._handle(name).rerank.remote(name, job)
        try:
            return name, await response
        except asyncio.CancelledError:
            # A timeout or a client that hung up: Ray cancels the call in the replica only when
            # told, and the replica then drops the pairs not scored yet, as one process does.
            response.cancel()
            raise
        except RayTaskError as exc:
            # The replica's own exception (a bad input, a full queue...), handled as in one process.
            raise exc.cause from None
        except BackPressureError:
            raise ApiError(503, f"every replica of {name} is busy; retry shortly",
                           headers={"Retry-After": "1"}) from None
        except (RayActorError, DeploymentUnavailableError) as exc:
            log.warning("a replica of %s failed during a request: %s", name, exc)
            raise ApiError(503, f"the replica serving {name} stopped during the request; retry",
                           headers={"Retry-After": "1"}) from None

    def model_cards(self) -> list[ModelCard]:
        return [self.model_card(name) for name in self.handles]

    def model_card(self, name: str | None) -> ModelCard:
        self.check_ready()
        if name is None:
            return self.cards[next(iter(self.handles))]
        return self.cards[self._known(name)]

    def queue_depths(self) -> dict[str, int]:
        """The queues are in the replicas; Ray Serve's own metrics report their ongoing requests."""
        return {}

    def _handle(self, name: str) -> DeploymentHandle:
        """The handle of the deployment holding `name`; a multiplexed one routes by the model."""
        handle = self.handles[name]
        return handle.options(multiplexed_model_id=name) if self.multiplexed else handle

    def _name(self, requested: str | None) -> str:
        """As in one process: with one model served, any name is accepted."""
        if len(self.handles) == 1 or requested is None:
            return next(iter(self.handles))
        return self._known(requested)

    def _known(self, name: str) -> str:
        if name not in self.handles:
            raise ApiError(404, f"model {name!r} is not served here; served: {', '.join(self.handles)}",
                           "model_not_found")
        return name
