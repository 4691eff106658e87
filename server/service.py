"""The boundary the routes call: the models served, and reranking with one of them.

Two implementations: `ModelRegistry` (server/registry.py) holds the engines in this process;
`RayModels` (server/ray_service.py) reaches them in Ray Serve replicas through deployment handles.
The routes, the schemas and the engine are the same for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from .rerank import RerankJob, RerankOutcome
from .scheduler import BatchObserver
from .schemas import ModelCard


class RerankService(Protocol):
    async def start(self, on_failure: Callable[[], None] | None = None,
                    on_batch: BatchObserver | None = None) -> Mapping[str, float]:
        """Make every model ready to serve; returns each model's load time in seconds.
        `on_failure` is called when one cannot load (the process then stops)."""
        ...

    async def stop(self) -> None:
        ...

    def check_ready(self) -> None:
        """Raise the 503 that says why not every model can serve yet."""
        ...

    async def rerank(self, model: str | None, job: RerankJob) -> tuple[str, RerankOutcome]:
        """Score `job` with the model the request named; returns the served name with the outcome.
        With one model served any name is accepted (GPUStack rewrites it); with several, an
        unknown name is a 404."""
        ...

    def model_cards(self) -> list[ModelCard]:
        ...

    def model_card(self, name: str | None) -> ModelCard:
        """The card of the model `name` (of the first model when None), or a 404."""
        ...

    def queue_depths(self) -> dict[str, int]:
        """Pairs waiting per model, where this process can see them."""
        ...
