"""`python -m server`: resolve the model, check it, and serve it with uvicorn."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import uvicorn

from .app import create_app
from .catalog import CatalogError, load_catalog
from .config import ConfigError, parse_args
from .download import ModelSourceError, resolve_model
from .engine import ModelLoadError, check_servable
from .gguf_info import NotAGGUFError, read_gguf_info
from .registry import LoadState, ModelRegistry

log = logging.getLogger("server")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        catalog = load_catalog(config.catalog)
        source = resolve_model(config.model or catalog.default, catalog)
        info = read_gguf_info(source.path)
        check_servable(info)
    except (CatalogError, ModelSourceError, NotAGGUFError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    context = source.entry.context_length if source.entry else None
    registry = ModelRegistry(source, info, config.engine_settings(context), alias=config.alias)
    server = uvicorn.Server(uvicorn.Config(
        None, host=config.host, port=config.port, log_level=config.log_level,
    ))
    server.config.app = create_app(registry, on_load_failure=lambda: setattr(server, "should_exit", True))
    server.run()
    if registry.state is LoadState.FAILED:
        print(f"error: {registry.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
