"""The application, declared in one place: routes, middleware, error handlers, and the lifespan
that loads the models in the background and frees them at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .http.body_limit import BodyLimit
from .http.errors import EXCEPTION_HANDLERS
from .http.lingering import LingeringClose
from .http.metrics import Metrics
from .http.middleware import ApiKeys, RequestContext, ShutdownAnswer
from .http.routes import PUBLIC_PATHS, ROUTES
from .limits import Limits
from .service import RerankService


def create_app(service: RerankService, api_keys: Sequence[str] = (), limits: Limits = Limits(),
               cors_origins: Sequence[str] = (), on_load_failure: Callable[[], None] | None = None,
               normalize: bool = False) -> Starlette:
    """`service` holds the models: in this process (ModelRegistry) or in Ray Serve replicas
    (RayModels). `on_load_failure` lets the process that runs the server stop it when a model
    cannot load. `normalize`: llama-box's scale for /v1/rerank requests that do not say."""
    metrics = Metrics(queue_depths=service.queue_depths)

    async def load() -> None:
        for name, seconds in (await service.start(on_load_failure, metrics.observe_batch)).items():
            metrics.load_seconds.labels(name).set(seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(load())
        try:
            yield
        finally:
            await loading
            await service.stop()

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(RequestContext, metrics=metrics, routes=[route.path for route in ROUTES]),
            Middleware(ShutdownAnswer),
            Middleware(LingeringClose),
            *([Middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                          allow_headers=["Authorization", "Content-Type", "X-Request-ID"])]
              if cors_origins else []),
            Middleware(ApiKeys, keys=api_keys, public=PUBLIC_PATHS),
            Middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout=limits.body_timeout),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.limits = limits
    app.state.normalize = normalize
    app.state.auth_required = bool(api_keys)
    return app
