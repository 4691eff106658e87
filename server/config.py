"""The command line, parsed into one explicit configuration Struct."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Annotated

import msgspec

from .catalog import DEFAULT_CATALOG
from .engine import EngineSettings

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(gt=0)]


class ServerConfig(msgspec.Struct, kw_only=True, frozen=True):
    model: str | None = None
    """A catalog name or a local .gguf path; default: the catalog's default model."""
    host: str = "127.0.0.1"
    port: Port = 8080
    alias: str | None = None
    ctx_size: Positive | None = None
    threads: Positive | None = None
    gpu_layers: int = 0
    batch_tokens: Positive = 512
    flash_attn: bool = True
    catalog: str = str(DEFAULT_CATALOG)
    log_level: str = "info"

    def engine_settings(self, catalog_context: int | None) -> EngineSettings:
        """A catalog entry's context length is the default; --ctx-size overrides it."""
        return EngineSettings(
            ctx_size=self.ctx_size or catalog_context,
            threads=self.threads,
            gpu_layers=self.gpu_layers,
            flash_attn=self.flash_attn,
            batch_tokens=self.batch_tokens,
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve a GGUF reranker over llama-box's /v1/rerank API.",
    )
    p.add_argument("--model", "-m", help="catalog name (see models.yaml) or path to a .gguf file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--alias", "-a", help="model name the server reports (default: catalog name or file stem)")
    p.add_argument("--ctx-size", "-c", type=int, help="longest query+document pair in tokens "
                   "(default: the catalog's context length, else the model's trained context)")
    p.add_argument("--threads", "-t", type=int, help="CPU threads (default: llama.cpp's choice)")
    p.add_argument("--gpu-layers", "-ngl", type=int, default=0, help="layers to offload to the GPU")
    p.add_argument("--batch-tokens", type=int, default=512, help="token budget of one decode")
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_false",
                   help="disable flash attention (on by default: faster on CPU)")
    p.add_argument("--catalog", default=str(DEFAULT_CATALOG), help="path of the model catalog")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


class ConfigError(ValueError):
    """A flag's value is invalid; the message names the flag."""


def parse_args(argv: Sequence[str] | None = None) -> ServerConfig:
    args = vars(_parser().parse_args(argv))
    try:
        return msgspec.convert(args, ServerConfig)
    except msgspec.ValidationError as exc:
        flag = str(exc).rpartition("`$.")[2].rstrip("`").replace("_", "-")
        raise ConfigError(f"--{flag}: {exc}") from None

