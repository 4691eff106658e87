"""What to serve: every configured model found (downloaded or converted if need be) and checked,
as the slots a registry loads. One process and every Ray replica start from here."""

from __future__ import annotations

from pathlib import Path

from ..config import ServerConfig
from ..engine.backend import ensure_backend
from ..engine.gguf_info import read_gguf_info
from ..engine.servable import check_servable
from ..registry import ModelSlot
from .catalog import Catalog
from .conversion import ConverterEnv
from .sources import resolve_model


def configured_slots(config: ServerConfig, catalog: Catalog) -> list[ModelSlot]:
    """Every configured model, found (downloaded if need be) and checked before it is served."""
    ensure_backend()  # an unpatched llama.cpp fails here, before anything is downloaded
    slots = []
    converter = ConverterEnv(Path(config.converter_env))
    for i, spec in enumerate(config.models or [catalog.default]):
        source = resolve_model(spec, catalog, converter)
        info = read_gguf_info(source.path)
        check_servable(info)
        entry = source.entry
        settings = config.engine_settings(entry.context_length if entry else None,
                                          entry.instruction if entry else None)
        alias = config.aliases[i] if i < len(config.aliases) else None
        slots.append(ModelSlot(source, info, settings, alias=alias, long_documents=config.long_documents_for(entry),
                               windows=config.window_plan(entry)))
    return slots
