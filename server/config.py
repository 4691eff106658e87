"""The command line and its environment variables, parsed into one explicit configuration Struct.

The flags include llama-box's, with their short forms, so GPUStack's launch line works unchanged:
`--host H --embeddings --gpu-layers N --parallel 1 --ctx-size 8192 --port P --model FILE --alias NAME
--no-mmap --no-warmup --rerank`. Every flag can also be set by an environment variable `RERANK_<FLAG>`
(list flags take a comma-separated value); a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import msgspec

from .engine.windows import LongDocuments, WindowPlan, plan_for
from .limits import Limits
from .provision.catalog import DEFAULT_CATALOG, CatalogEntry
from .settings import DEFAULT_CONVERTER_ENV, EngineSettings

DEFAULTS = Limits()

log = logging.getLogger(__name__)

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(gt=0)]


class ServerConfig(msgspec.Struct, kw_only=True, frozen=True):
    models: list[str] = []
    """What `--model` accepts (server/provision/model_spec.py); empty: the catalog's default model."""
    aliases: list[str] = []
    """Served names, in the order of `models`; a model without one is served under its own name."""
    host: str = "127.0.0.1"
    port: Port = 8080
    ctx_size: Positive | None = None
    threads: Positive | None = None
    gpu_layers: int = 0
    batch_tokens: Positive = 256
    flash_attn: bool = True
    use_mmap: bool = True
    api_keys: list[str] = []
    cors_origins: list[str] = []
    """Origins allowed to call from a browser; none (CORS off) unless configured."""
    max_body_bytes: Positive = DEFAULTS.max_body_bytes
    max_documents: Positive = DEFAULTS.max_documents
    max_text_chars: Positive = DEFAULTS.max_text_chars
    max_queue_pairs: Positive = DEFAULTS.max_queue_pairs
    request_timeout: Annotated[float, msgspec.Meta(gt=0)] = DEFAULTS.request_timeout
    shutdown_grace: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    catalog: str = str(DEFAULT_CATALOG)
    converter_env: str = str(DEFAULT_CONVERTER_ENV)
    fetch_only: bool = False
    """Download (or convert) and check the models, print their files, and exit."""
    long_documents: LongDocuments | None = None
    """None: each catalog entry's default, else truncate."""
    window_tokens: Positive | None = None
    window_overlap: Annotated[int, msgspec.Meta(ge=0)] = 80
    max_windows_per_document: Positive = 32
    log_level: str = "info"

    def long_documents_for(self, entry: CatalogEntry | None) -> LongDocuments:
        return self.long_documents or (entry.long_documents if entry else "truncate")

    def window_plan(self, entry: CatalogEntry | None) -> WindowPlan:
        return plan_for(entry.window_style if entry else "bcembedding", self.window_overlap,
                        self.max_windows_per_document, self.window_tokens)

    def limits(self) -> Limits:
        return Limits(max_body_bytes=self.max_body_bytes, max_documents=self.max_documents,
                      max_text_chars=self.max_text_chars, max_queue_pairs=self.max_queue_pairs,
                      request_timeout=self.request_timeout)

    def engine_settings(self, catalog_context: int | None, instruction: str | None = None) -> EngineSettings:
        """A catalog entry's context length is the default (--ctx-size overrides it), and its
        instruction the default one for its requests."""
        return EngineSettings(
            instruction=instruction,
            ctx_size=self.ctx_size or catalog_context,
            threads=self.threads,
            gpu_layers=self.gpu_layers,
            flash_attn=self.flash_attn,
            batch_tokens=self.batch_tokens,
            use_mmap=self.use_mmap,
        )


class ConfigError(ValueError):
    """A flag's value is invalid; the message names the flag."""


# llama-box and llama-server flags that change nothing here: accepted, with a warning saying why.
IGNORED_FLAGS = {
    ("--embeddings", "--embedding"): "this server only reranks",
    ("--parallel", "-np"): "one scheduler per model batches all concurrent requests",
    ("--batch-size", "-b"): "decodes are sized by --batch-tokens (-ub)",
    ("--cont-batching", "-cb"): "batching across requests is always on",
    ("--metrics",): "/metrics is always served",
}
_IGNORED_REASONS = {f"ignored_{names[0][2:]}": (names[0], reason) for names, reason in IGNORED_FLAGS.items()}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve GGUF rerankers over llama-box's /v1/rerank API and the dialects of Jina, TEI and Cohere.",
    )
    p.add_argument("--model", "-m", dest="models", action="append",
                   help="a catalog name (models.yaml), NAME:QUANT, a Hugging Face repository OWNER/REPO[:QUANT] "
                        "(GGUF, or a checkpoint to convert), OWNER/REPO/FILE.gguf, or a local .gguf file; "
                        "repeat to serve several")
    p.add_argument("--alias", "-a", dest="aliases", action="append",
                   help="served model name, one per --model in order (default: catalog name or file stem)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080)")
    p.add_argument("--ctx-size", "-c", type=int, help="longest query+document pair in tokens "
                   "(default: the catalog's context length, else the model's trained context)")
    p.add_argument("--threads", "-t", type=int, help="CPU threads (default: llama.cpp's choice)")
    p.add_argument("--gpu-layers", "--n-gpu-layers", "-ngl", type=int, help="layers to offload to the GPU")
    p.add_argument("--batch-tokens", "--ubatch-size", "-ub", type=int, help="token budget of one decode (default 256)")
    p.add_argument("--flash-attn", "-fa", nargs="?", const="on", choices=["on", "off", "auto"],
                   help="flash attention (default on: nearly twice as fast on CPU)")
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_const", const="off")
    p.add_argument("--no-mmap", dest="use_mmap", action="store_const", const=False,
                   help="read the model into memory instead of mapping it")
    p.add_argument("--api-key", dest="api_keys", action="append",
                   help="accept requests carrying `Authorization: Bearer KEY`; repeatable")
    p.add_argument("--api-key-file", help="file with one API key per line")
    p.add_argument("--cors-origin", dest="cors_origins", action="append",
                   help="allow browser calls from this origin; repeatable (default: CORS off)")
    p.add_argument("--max-body-bytes", type=int, help=f"largest request body (default {DEFAULTS.max_body_bytes})")
    p.add_argument("--max-documents", type=int, help=f"most documents per request (default {DEFAULTS.max_documents})")
    p.add_argument("--max-text-chars", type=int,
                   help=f"longest query or document in characters (default {DEFAULTS.max_text_chars})")
    p.add_argument("--max-queue-pairs", type=int,
                   help=f"pairs waiting per model before 503 + Retry-After (default {DEFAULTS.max_queue_pairs})")
    p.add_argument("--request-timeout", type=float,
                   help=f"seconds before a request is answered 504 (default {DEFAULTS.request_timeout:g})")
    p.add_argument("--shutdown-grace", type=float,
                   help="seconds to finish in-flight requests after SIGTERM (default 30)")
    p.add_argument("--long-documents", choices=["truncate", "windows"],
                   help="score a document longer than the context by its best window, or cut it "
                        "(default: the catalog entry's, else truncate)")
    p.add_argument("--window-tokens", type=int,
                   help="the longest pair of query and window in tokens (default: the context)")
    p.add_argument("--window-overlap", type=int, help="tokens shared by consecutive windows (default 80)")
    p.add_argument("--max-windows-per-document", type=int,
                   help="more windows for one document is a 413 (default 32)")
    p.add_argument("--catalog", help="path of the model catalog (default: models.yaml)")
    p.add_argument("--converter-env", help="where the checkpoint converter's environment is set up on first "
                   f"use (default {DEFAULT_CONVERTER_ENV})")
    p.add_argument("--fetch-only", action="store_true", default=None,
                   help="download or convert the models, check them, print their files and exit")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    # Accepted for llama-box compatibility; they describe what this server always does.
    p.add_argument("--rerank", "--reranking", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-warmup", action="store_true", help=argparse.SUPPRESS)
    for dest, (flag, _) in _IGNORED_REASONS.items():
        names = next(n for n in IGNORED_FLAGS if n[0] == flag)
        p.add_argument(*names, dest=dest, nargs="?", const=True, help=argparse.SUPPRESS)
    return p


# Flags that an environment variable may set, and how to read the variable.
ENVIRONMENT = {
    "models": ("RERANK_MODEL", "list"), "aliases": ("RERANK_ALIAS", "list"),
    "host": ("RERANK_HOST", "str"), "port": ("RERANK_PORT", "int"),
    "ctx_size": ("RERANK_CTX_SIZE", "int"), "threads": ("RERANK_THREADS", "int"),
    "gpu_layers": ("RERANK_GPU_LAYERS", "int"), "batch_tokens": ("RERANK_BATCH_TOKENS", "int"),
    "flash_attn": ("RERANK_FLASH_ATTN", "str"), "use_mmap": ("RERANK_MMAP", "bool"),
    "api_keys": ("RERANK_API_KEY", "list"), "api_key_file": ("RERANK_API_KEY_FILE", "str"),
    "cors_origins": ("RERANK_CORS_ORIGIN", "list"), "max_body_bytes": ("RERANK_MAX_BODY_BYTES", "int"),
    "max_documents": ("RERANK_MAX_DOCUMENTS", "int"), "max_text_chars": ("RERANK_MAX_TEXT_CHARS", "int"),
    "max_queue_pairs": ("RERANK_MAX_QUEUE_PAIRS", "int"), "request_timeout": ("RERANK_REQUEST_TIMEOUT", "float"),
    "shutdown_grace": ("RERANK_SHUTDOWN_GRACE", "float"),
    "long_documents": ("RERANK_LONG_DOCUMENTS", "str"), "window_tokens": ("RERANK_WINDOW_TOKENS", "int"),
    "window_overlap": ("RERANK_WINDOW_OVERLAP", "int"),
    "max_windows_per_document": ("RERANK_MAX_WINDOWS_PER_DOCUMENT", "int"),
    "catalog": ("RERANK_CATALOG", "str"), "converter_env": ("RERANK_CONVERTER_ENV", "str"),
    "log_level": ("RERANK_LOG_LEVEL", "str"),
}


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    args = vars(_parser().parse_args(argv))
    environ = os.environ if environ is None else environ
    for dest, (variable, kind) in ENVIRONMENT.items():
        if args.get(dest) is None and variable in environ:
            args[dest] = _from_environment(variable, environ[variable], kind)
    for dest, (flag, reason) in _IGNORED_REASONS.items():
        if args[dest] is not None:
            log.warning("%s has no effect here: %s", flag, reason)
    values = {k: v for k, v in args.items() if v is not None and k in ServerConfig.__struct_fields__}
    if "flash_attn" in values:
        values["flash_attn"] = values["flash_attn"] != "off"  # "auto" resolves to on, as llama.cpp does on CPU
    values["api_keys"] = [*values.get("api_keys", []), *_read_key_file(args.get("api_key_file"))]
    try:
        return msgspec.convert(values, ServerConfig)
    except msgspec.ValidationError as exc:
        flag = str(exc).rpartition("`$.")[2].rstrip("`").split("[")[0].replace("_", "-")
        raise ConfigError(f"--{flag}: {exc}") from None


def _from_environment(variable: str, raw: str, kind: str) -> object:
    try:
        if kind == "list":
            return [item.strip() for item in raw.split(",") if item.strip()]
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return raw.strip().lower() not in ("0", "false", "no", "off")
        return raw
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not a valid {kind}") from None


def _read_key_file(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"--api-key-file: cannot read {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
