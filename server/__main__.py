"""`python -m server`: resolve the models, check them, and serve them with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import uvicorn

from .app import create_app
from .config import ConfigError, parse_args
from .engine.gguf_info import NotAGGUFError
from .engine.llama_build import UnpatchedEngineError
from .engine.servable import ModelLoadError
from .http.connection import guarded_protocol
from .provision.catalog import CatalogError, load_catalog
from .provision.plan import model_plans
from .provision.sources import ModelSourceError
from .registry import ModelRegistry, ModelSlot
from .service import LoadState

log = logging.getLogger("server")

class GracefulServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies by the signal;
    a completed graceful stop is a success here and exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


STARTUP_ERRORS = (ConfigError, CatalogError, ModelSourceError, NotAGGUFError, ModelLoadError, UnpatchedEngineError,
                  ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
        logging.basicConfig(level=config.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        plans = model_plans(config, load_catalog(config.catalog))
        registry = ModelRegistry([ModelSlot(plan) for plan in plans], max_queued_pairs=config.max_queue_pairs)
    except STARTUP_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    if config.fetch_only:
        for plan in plans:
            print(f"{plan.name}\t{plan.source.path}")
        return 0
    # On SIGTERM uvicorn stops accepting, lets in-flight requests finish for the grace period,
    # then runs the lifespan's shutdown, which fails whatever still waits with a 503.
    limits = config.limits()
    server = GracefulServer(uvicorn.Config(None, host=config.host, port=config.port, log_level=config.log_level,
                                           access_log=False, timeout_graceful_shutdown=config.shutdown_grace,
                                           http=guarded_protocol(limits.header_timeout, limits.max_header_bytes)))
    server.config.app = create_app(registry, api_keys=config.api_keys, limits=limits,
                                   cors_origins=config.cors_origins, normalize=config.normalize == "on",
                                   on_load_failure=lambda: setattr(server, "should_exit", True))
    server.run()
    if registry.state is LoadState.FAILED:
        print(f"error: {registry.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
