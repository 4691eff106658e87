"""The gateway's side of Ray Serve: the same HTTP application as one process, over handles.

`RayModels` is the rerank service (server/service.py) the routes call; it reaches the model
deployments (server/ray/replica.py) through their handles. Nothing here loads llama.cpp: the
gateway reserves no CPU and only parses, routes and shapes answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette

from ..app import create_app
from ..config import ServerConfig
from ..faults import Busy
from ..jobs import RerankJob, RerankOutcome
from ..scheduler import BatchObserver
from ..service import LoadState, ModelInfo, known_name, served_name, unavailable

log = logging.getLogger(__name__)


class RayModels:
    """The gateway's side: each served name maps to the handle of the deployment holding it."""

    def __init__(self, handles: Mapping[str, DeploymentHandle], multiplexed: bool) -> None:
        self.handles = dict(handles)
        self.multiplexed = multiplexed
        self.described: dict[str, ModelInfo] = {}
        self.state = LoadState.LOADING
        self.error: str | None = None

    async def start(self, on_failure: Callable[[], None] | None = None,
                    on_batch: BatchObserver | None = None) -> Mapping[str, float]:
        """Wait for every model's deployment to answer; the batches happen in the replicas, so
        `on_batch` is not called here."""
        load_seconds = {}
        try:
            for name in self.handles:
                self.described[name], load_seconds[name] = await self._handle(name).describe.remote(name)
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
        name = served_name(self.handles, model)
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
            raise Busy(f"every replica of {name} is busy; retry shortly") from None
        except (RayActorError, DeploymentUnavailableError) as exc:
            log.warning("a replica of %s failed during a request: %s", name, exc)
            raise Busy(f"the replica serving {name} stopped during the request; retry") from None

    def models(self) -> list[ModelInfo]:
        return [self.model(name) for name in self.handles]

    def model(self, name: str | None) -> ModelInfo:
        self.check_ready()
        return self.described[next(iter(self.handles)) if name is None else known_name(self.handles, name)]

    def queue_depths(self) -> dict[str, int]:
        """The queues are in the replicas; Ray Serve's own metrics report their ongoing requests."""
        return {}

    def _handle(self, name: str) -> DeploymentHandle:
        """The handle of the deployment holding `name`; a multiplexed one routes by the model."""
        handle = self.handles[name]
        return handle.options(multiplexed_model_id=name) if self.multiplexed else handle


class Gateway:
    """The ingress: the application of server/app.py over the model deployments' handles."""

    def __init__(self, handles: Mapping[str, DeploymentHandle], config: ServerConfig, multiplexed: bool) -> None:
        self.config = config
        self.service = RayModels(handles, multiplexed)

    def __serve_build_asgi_app__(self) -> Starlette:
        config = self.config
        return create_app(self.service, api_keys=config.api_keys, limits=config.limits(),
                          cors_origins=config.cors_origins, normalize=config.normalize == "on")
