"""The application: routes, error handlers and the lifespan that loads and frees the model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette

from .errors import EXCEPTION_HANDLERS
from .registry import ModelRegistry
from .routes import ROUTES


def create_app(registry: ModelRegistry, on_load_failure: Callable[[], None] | None = None) -> Starlette:
    """`on_load_failure` lets the process that runs the server stop it when the model cannot load."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loading = asyncio.create_task(asyncio.to_thread(registry.load, on_load_failure))
        try:
            yield
        finally:
            await loading
            await asyncio.to_thread(registry.close)

    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.registry = registry
    return app
