"""What to serve: each configured model decided once, from the flags and its catalog entry.

A ModelPlan says where the model's file is (downloaded or converted if need be, and checked), how
to load it and how its long documents are scored. One process and every Ray replica build their
registries from plans; nothing after this module goes back to the flags or the catalog.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from ..config import ServerConfig
from ..engine.backend import ensure_backend
from ..engine.gguf_info import GGUFInfo, read_gguf_info
from ..engine.servable import check_servable
from ..engine.windows import LongDocuments, WindowPlan, plan_for
from ..settings import EngineSettings
from .catalog import Catalog, CatalogEntry
from .conversion import ConverterEnv
from .sources import ModelSource, resolve_model


class ModelPlan(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    """The served name: the alias, else the source's name."""
    source: ModelSource
    info: GGUFInfo
    settings: EngineSettings
    long_documents: LongDocuments = "truncate"
    windows: WindowPlan = WindowPlan()


def model_plans(config: ServerConfig, catalog: Catalog) -> list[ModelPlan]:
    """Every configured model, found (downloaded if need be) and checked before it is served."""
    ensure_backend()  # an unpatched llama.cpp fails here, before anything is downloaded
    converter = ConverterEnv(Path(config.converter_env))
    plans = []
    for i, spec in enumerate(config.models or [catalog.default]):
        source = resolve_model(spec, catalog, converter)
        info = read_gguf_info(source.path)
        check_servable(info)
        alias = config.aliases[i] if i < len(config.aliases) else None
        plans.append(plan_model(config, source, info, alias))
    return plans


def plan_model(config: ServerConfig, source: ModelSource, info: GGUFInfo, alias: str | None = None) -> ModelPlan:
    entry = source.entry
    return ModelPlan(
        name=alias or source.name, source=source, info=info, settings=engine_settings(config, entry),
        long_documents=config.long_documents or (entry.long_documents if entry else "truncate"),
        windows=plan_for(entry.window_style if entry else "bcembedding", config.window_overlap,
                         config.max_windows_per_document, config.window_tokens),
    )


def engine_settings(config: ServerConfig, entry: CatalogEntry | None) -> EngineSettings:
    """A catalog entry's context length is the default (--ctx-size overrides it), and its
    instruction the default one for its requests."""
    return EngineSettings(
        instruction=entry.instruction if entry else None,
        ctx_size=config.ctx_size or (entry.context_length if entry else None),
        threads=config.threads,
        gpu_layers=config.gpu_layers,
        flash_attn=config.flash_attn,
        batch_tokens=config.batch_tokens,
        use_mmap=config.use_mmap,
        tensor_split=tuple(float(x) for x in re.split(r"[,/]", config.tensor_split)) if config.tensor_split else (),
        main_gpu=config.main_gpu,
        split_mode=config.split_mode,
    )
