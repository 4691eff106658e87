"""The boundary the routes call: the models served, and reranking with one of them.

Two implementations: `ModelRegistry` (server/registry.py) holds the engines in this process;
`RayModels` (server/ray/gateway.py) reaches them in Ray Serve replicas through deployment handles.
The routes, the schemas and the engine are the same for both.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

import msgspec

from .engine.windows import LongDocuments
from .faults import ModelNotFound, ModelNotReady
from .jobs import RerankJob, RerankOutcome
from .scheduler import BatchObserver
from .scoring import ScoreKind


class LoadState(enum.Enum):
    """Where a model (or every model of a service) stands on its way to serving."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def unavailable(state: LoadState, error: str | None) -> ModelNotReady:
    """The fault that says why a model cannot serve yet."""
    if state is LoadState.LOADING:
        return ModelNotReady("the model is still loading")
    return ModelNotReady(f"the model failed to load: {error}")


class ModelInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A served model as the service describes it; `/v1/models` and TEI's `/info` shape it."""

    name: str
    loaded_at: int
    """Unix time of the load; 0 while loading."""
    family: str | None
    architecture: str
    repository: str | None
    """The Hugging Face repository the file came from (a checkpoint, when `converted`)."""
    file: str
    quantization: str | None
    converted: bool
    context_length: int
    batch_tokens: int
    long_documents: LongDocuments
    scores: ScoreKind


def served_name(served: Collection[str], requested: str | None) -> str:
    """The model a request gets: with one model served, any name is accepted (GPUStack rewrites
    it); with several, the request's `model` picks one."""
    if len(served) == 1 or requested is None:
        return next(iter(served))
    return known_name(served, requested)


def known_name(served: Collection[str], name: str) -> str:
    if name not in served:
        raise ModelNotFound(f"model {name!r} is not served here; served: {', '.join(served)}")
    return name


class RerankService(Protocol):
    async def start(self, on_failure: Callable[[], None] | None = None,
                    on_batch: BatchObserver | None = None) -> Mapping[str, float]:
        """Make every model ready to serve; returns each model's load time in seconds.
        `on_failure` is called when one cannot load (the process then stops)."""
        ...

    async def stop(self) -> None:
        ...

    def check_ready(self) -> None:
        """Raise ModelNotReady, saying why not every model can serve yet."""
        ...

    async def rerank(self, model: str | None, job: RerankJob) -> tuple[str, RerankOutcome]:
        """Score `job` with the model the request named (served_name()); returns the served name
        with the outcome."""
        ...

    def models(self) -> list[ModelInfo]:
        """The served models; ModelNotReady until they can all serve."""
        ...

    def model(self, name: str | None) -> ModelInfo:
        """The card of the model `name` (of the first model when None), or ModelNotFound; ModelNotReady
        until the models can all serve."""
        ...

    def queue_depths(self) -> dict[str, int]:
        """Pairs waiting per model, where this process can see them."""
        ...
