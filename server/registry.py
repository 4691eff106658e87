"""The models this process serves, loaded in the background so `/health` can answer 503 meanwhile."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from .download import ModelSource
from .engine import EngineSettings, RerankEngine
from .errors import ApiError
from .gguf_info import GGUFInfo
from .rerank import ServedModel

log = logging.getLogger(__name__)


class LoadState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class ModelRegistry:
    """Owns the served model; requests ask it for the model by the name they sent."""

    def __init__(self, source: ModelSource, info: GGUFInfo, settings: EngineSettings,
                 alias: str | None = None) -> None:
        self.source = source
        self.info = info
        self.settings = settings
        self.name = alias or source.name
        self.state = LoadState.LOADING
        self.error: str | None = None
        self._model: ServedModel | None = None

    def load(self, on_failure: Callable[[], None] | None = None) -> None:
        """Load the engine (blocking: run it in a thread); a failure is logged and reported."""
        started = time.perf_counter()
        try:
            self._model = ServedModel(self.name, RerankEngine(self.info, self.settings))
        except Exception as exc:
            self.state, self.error = LoadState.FAILED, str(exc)
            log.error("cannot serve %s: %s", self.name, exc)
            if on_failure:
                on_failure()
            return
        self.state = LoadState.READY
        log.info("loaded %s from %s in %.1fs", self.name, self.source.path, time.perf_counter() - started)

    def get(self, requested: str | None) -> ServedModel:
        """With one model served, any name is accepted: GPUStack rewrites it."""
        if self._model is None:
            raise ApiError(503, "the model is still loading" if self.state is LoadState.LOADING
                           else f"the model failed to load: {self.error}")
        return self._model

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None
