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
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec

from .engine.windows import LongDocuments
from .limits import Limits
from .llama_box import without_inert_flags
from .provision.catalog import DEFAULT_CATALOG
from .settings import DEFAULT_CONVERTER_ENV

DEFAULTS = Limits()

log = logging.getLogger(__name__)

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
TensorSplit = Annotated[str, msgspec.Meta(pattern=r"^\d+(\.\d+)?([,/]\d+(\.\d+)?)*$")]
"""llama.cpp's and llama-box's form: proportions separated by `,` or `/`."""


@dataclass(frozen=True)
class Flag:
    """A ServerConfig field's command-line flag and environment variable, declared on the field.

    The variable is `RERANK_` and the first flag's name unless given; a list field takes repeated
    flags or a comma-separated variable. `{default}` in the help is the field's default.
    """

    names: tuple[str, ...]
    help: str
    env: str | None = ""
    """The variable's name; "" derives it from the first flag, None means the flag has none."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """argparse's keyword arguments where the field's type does not decide them."""

    def variable(self) -> str | None:
        if self.env == "":
            return "RERANK_" + self.names[0].lstrip("-").upper().replace("-", "_")
        return self.env


def flag(*names: str, help: str, env: str | None = "", **options: Any) -> Flag:
    return Flag(names, help, env, options)


class ServerConfig(msgspec.Struct, kw_only=True, frozen=True):
    models: Annotated[list[str], flag(
        "--model", "-m", help="a catalog name (models.yaml), NAME:QUANT, a Hugging Face repository "
        "OWNER/REPO[:QUANT] (GGUF, or a checkpoint to convert), OWNER/REPO/FILE.gguf, or a local .gguf "
        "file; repeat to serve several")] = []
    """What `--model` accepts (server/provision/model_spec.py); empty: the catalog's default model."""
    aliases: Annotated[list[str], flag(
        "--alias", "-a", help="served model name, one per --model in order (default: catalog name or file stem)")] = []
    """Served names, in the order of `models`; a model without one is served under its own name."""
    host: Annotated[str, flag("--host", help="address to listen on (default {default})")] = "127.0.0.1"
    port: Annotated[Port, flag("--port", help="port to listen on (default {default})")] = 8080
    ctx_size: Annotated[Positive | None, flag(
        "--ctx-size", "-c", help="longest query+document pair in tokens (default: the catalog's context length, "
        "else the model's trained context; never past an encoder's position table)")] = None
    threads: Annotated[Positive | None, flag(
        "--threads", "-t", help="CPU threads (default: the cores this process may use)")] = None
    gpu_layers: Annotated[int, flag("--gpu-layers", "--n-gpu-layers", "-ngl", help="layers to offload to the GPU")] = 0
    batch_tokens: Annotated[Positive, flag(
        "--batch-tokens", "--ubatch-size", "-ub", help="token budget of one decode (default {default})")] = 256
    flash_attn: Annotated[bool, flag(
        "--flash-attn", "-fa", help="flash attention (default on: nearly twice as fast on CPU)",
        nargs="?", const="on", choices=["on", "off", "auto"], type=str)] = True
    tensor_split: Annotated[TensorSplit | None, flag(
        "--tensor-split", "-ts", help="how to share the model among GPUs, as llama.cpp takes it: proportions "
        "such as 3,1 or 2048/1024 (GPUStack passes each GPU's memory)")] = None
    main_gpu: Annotated[Annotated[int, msgspec.Meta(ge=0)], flag(
        "--main-gpu", "-mg", help="the GPU that holds the model with --split-mode none (default {default})")] = 0
    split_mode: Annotated[Literal["none", "layer", "row"], flag(
        "--split-mode", "-sm", help="how to split the model across GPUs (default {default})")] = "layer"
    use_mmap: Annotated[bool, flag(
        "--no-mmap", help="read the model into memory instead of mapping it", env="RERANK_MMAP",
        action="store_const", const=False)] = True
    api_keys: Annotated[list[str], flag(
        "--api-key", help="accept requests carrying `Authorization: Bearer KEY`; repeatable")] = []
    cors_origins: Annotated[list[str], flag(
        "--cors-origin", help="allow browser calls from this origin; repeatable (default: CORS off)")] = []
    """Origins allowed to call from a browser; none (CORS off) unless configured."""
    max_body_bytes: Annotated[Positive, flag(
        "--max-body-bytes", help="largest request body (default {default})")] = DEFAULTS.max_body_bytes
    max_documents: Annotated[Positive, flag(
        "--max-documents", help="most documents per request (default {default})")] = DEFAULTS.max_documents
    max_text_chars: Annotated[Positive, flag(
        "--max-text-chars", help="longest query or document in characters (default {default})",
    )] = DEFAULTS.max_text_chars
    max_queue_pairs: Annotated[Positive, flag(
        "--max-queue-pairs", help="pairs waiting per model before 503 + Retry-After (default {default})",
    )] = DEFAULTS.max_queue_pairs
    request_timeout: Annotated[Seconds, flag(
        "--request-timeout", help="seconds before a request is answered 504 (default {default:g})",
    )] = DEFAULTS.request_timeout
    header_timeout: Annotated[Seconds, flag(
        "--header-timeout", help="seconds for a request's line and headers to arrive, else 408 (default {default:g})",
    )] = DEFAULTS.header_timeout
    body_timeout: Annotated[Seconds, flag(
        "--body-timeout", help="seconds for a request's whole body to arrive after its headers, else 408 "
        "(default {default:g})")] = DEFAULTS.body_timeout
    max_header_bytes: Annotated[Positive, flag(
        "--max-header-bytes", help="largest request line and headers together, else 431 (default {default})",
    )] = DEFAULTS.max_header_bytes
    shutdown_grace: Annotated[Annotated[float, msgspec.Meta(ge=0)], flag(
        "--shutdown-grace", help="seconds to finish in-flight requests after SIGTERM (default {default:g})")] = 30.0
    catalog: Annotated[str, flag("--catalog", help="path of the model catalog (default: models.yaml)")] = str(
        DEFAULT_CATALOG)
    converter_env: Annotated[str, flag(
        "--converter-env", help="where the checkpoint converter's environment is set up on first use "
        "(default {default})")] = str(DEFAULT_CONVERTER_ENV)
    fetch_only: Annotated[bool, flag(
        "--fetch-only", help="download or convert the models, check them, print their files and exit", env=None,
        action="store_true", default=None)] = False
    """Download (or convert) and check the models, print their files, and exit."""
    long_documents: Annotated[LongDocuments | None, flag(
        "--long-documents", help="score a document longer than the context by its best window, or cut it "
        "(default: the catalog entry's, else truncate)")] = None
    """None: each catalog entry's default, else truncate."""
    window_tokens: Annotated[Positive | None, flag(
        "--window-tokens", help="the longest pair of query and window in tokens (default: the context)")] = None
    window_overlap: Annotated[Annotated[int, msgspec.Meta(ge=0)], flag(
        "--window-overlap", help="tokens shared by consecutive windows (default {default})")] = 80
    max_windows_per_document: Annotated[Positive, flag(
        "--max-windows-per-document", help="more windows for one document is a 413 (default {default})")] = 32
    normalize: Annotated[Literal["on", "off"] | None, flag(
        "--normalize", help="/v1/rerank's scores when a request leaves `normalize` unset: on, llama-box's "
        "[0.001, 0.999] scale (its default since v0.0.81), or off, raw logits (default: off, or on with "
        "llama-box's --rerank flag)")] = None
    """None: llama-box's default when started with llama-box's command line (`--rerank`), else off."""
    log_level: Annotated[str, flag(
        "--log-level", help="(default {default})", choices=["debug", "info", "warning", "error"])] = "info"

    def limits(self) -> Limits:
        return Limits(max_body_bytes=self.max_body_bytes, max_documents=self.max_documents,
                      max_text_chars=self.max_text_chars, max_queue_pairs=self.max_queue_pairs,
                      request_timeout=self.request_timeout, header_timeout=self.header_timeout,
                      body_timeout=self.body_timeout, max_header_bytes=self.max_header_bytes)


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


def field_flags() -> dict[str, tuple[Flag, Any, object]]:
    """Each ServerConfig field's flag, its type without the flag, and its default."""
    found = {}
    for info in msgspec.structs.fields(ServerConfig):
        hints = get_type_hints(ServerConfig, include_extras=True)[info.name]
        flags = [m for m in get_args(hints)[1:] if isinstance(m, Flag)]
        default = info.default if info.default is not msgspec.NODEFAULT else info.default_factory()
        found[info.name] = (flags[0], get_args(hints)[0], default)
    return found


def _scalar(kind: Any) -> Any:
    """The type inside Annotated and Optional: int, float, str, bool, list[...] or a Literal."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
        else:
            return kind


def _argument(dest: str, spec: Flag, kind: Any, default: object) -> tuple[tuple[str, ...], dict[str, Any]]:
    """argparse's arguments for a field: repeated for a list, its type's converter, a Literal's choices."""
    options: dict[str, Any] = {"dest": dest, "help": spec.help.format(default=default)}
    scalar = _scalar(kind)
    if get_origin(scalar) is list:
        options["action"] = "append"
    elif get_origin(scalar) is Literal:
        options["choices"] = list(get_args(scalar))
    elif scalar in (int, float):
        options["type"] = scalar
    options.update(spec.options)
    return spec.names, options


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m server",
        description="Serve GGUF rerankers over llama-box's /v1/rerank API and the dialects of Jina, TEI and Cohere.",
    )
    for dest, (spec, kind, default) in field_flags().items():
        names, options = _argument(dest, spec, kind, default)
        p.add_argument(*names, **options)
    p.add_argument("--no-flash-attn", dest="flash_attn", action="store_const", const="off")
    p.add_argument("--api-key-file", help="file with one API key per line")
    # Accepted for llama-box compatibility; they describe what this server always does.
    p.add_argument("--rerank", "--reranking", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-warmup", "--warmup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mmap", dest="use_mmap", action="store_const", const=True, help=argparse.SUPPRESS)
    p.add_argument("--verbose", "-v", "--log-verbose", dest="log_level", action="store_const", const="debug",
                   help=argparse.SUPPRESS)
    for dest, (flag_name, _) in _IGNORED_REASONS.items():
        names = next(n for n in IGNORED_FLAGS if n[0] == flag_name)
        p.add_argument(*names, dest=dest, nargs="?", const=True, help=argparse.SUPPRESS)
    return p


def environment() -> dict[str, tuple[str, str]]:
    """dest -> (variable, how to read it), for every flag an environment variable may set."""
    table = {}
    for dest, (spec, kind, _) in field_flags().items():
        variable = spec.variable()
        if variable is None:
            continue
        scalar = _scalar(kind)
        if "choices" in spec.options or get_origin(scalar) is Literal:
            how = "str"
        elif get_origin(scalar) is list:
            how = "list"
        else:
            how = {int: "int", float: "float", bool: "bool"}.get(scalar, "str")
        table[dest] = (variable, how)
    table["api_key_file"] = ("RERANK_API_KEY_FILE", "str")
    return table


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    argv, inert = without_inert_flags(sys.argv[1:] if argv is None else argv)
    if inert:
        log.warning("llama-box flags with no effect here, skipped: %s", " ".join(inert))
    args = vars(_parser().parse_args(argv))
    environ = os.environ if environ is None else environ
    for dest, (variable, kind) in environment().items():
        if args.get(dest) is None and variable in environ:
            args[dest] = _from_environment(variable, environ[variable], kind)
    if args["normalize"] is None and args["rerank"]:
        # llama-box's command line: its default since v0.0.81, which its users' thresholds expect.
        args["normalize"] = "on"
    for dest, (flag_name, reason) in _IGNORED_REASONS.items():
        if args[dest] is not None:
            log.warning("%s has no effect here: %s", flag_name, reason)
    values = {k: v for k, v in args.items() if v is not None and k in ServerConfig.__struct_fields__}
    if "flash_attn" in values:
        values["flash_attn"] = values["flash_attn"] != "off"  # "auto" resolves to on, as llama.cpp does on CPU
    values["api_keys"] = [*values.get("api_keys", []), *_read_key_file(args.get("api_key_file"))]
    try:
        return msgspec.convert(values, ServerConfig)
    except msgspec.ValidationError as exc:
        flag_name = str(exc).rpartition("`$.")[2].rstrip("`").split("[")[0].replace("_", "-")
        raise ConfigError(f"--{flag_name}: {exc}") from None


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
