"""The catalog of known rerankers (`models.yaml`), as validated Structs.

A typo in `models.yaml` (an unknown key, a wrong type, a default that names no entry) is a
clear error at start-up, not a surprise at the first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from ..engine.windows import LongDocuments, WindowStyle

DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "models.yaml"

Family = Literal["bge", "bce", "jina", "jina-v2", "gte", "qwen3", "cross-encoder", "mxbai", "bge-gemma", "modernbert"]


class CatalogEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One reranker: its Hugging Face repository and what the engine must know.

    The repository holds GGUF files, one per weight type, and `quantization` picks the default one
    (`NAME:QUANT` picks another); or it holds the original checkpoint, converted to that type."""

    repo: Annotated[str, msgspec.Meta(pattern=r"^[\w.-]+/[\w.-]+$")]
    family: Family
    context_length: Annotated[int, msgspec.Meta(gt=0)]
    quantization: Annotated[str, msgspec.Meta(pattern=r"^[\w.]+$")]
    revision: str = "main"
    long_documents: LongDocuments = "truncate"
    """How documents longer than the context are scored by default: as the model's own library does."""
    window_style: WindowStyle = "bcembedding"
    """Whose windows: BCEmbedding's (the last one short) or jina-v2's `rerank()` (the query cut to
    half a pair, the last window full length)."""
    instruction: str | None = None
    """Default task instruction for models whose template has one (Qwen3)."""
    description: str = ""


class Catalog(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    default: str
    models: dict[str, CatalogEntry]

    def __post_init__(self) -> None:
        if self.default not in self.models:
            raise ValueError(f"the default model {self.default!r} is not an entry of `models`")


class CatalogError(ValueError):
    """models.yaml cannot be used; the message names the file and the field."""


def load_catalog(path: str | Path = DEFAULT_CATALOG) -> Catalog:
    path = Path(path)
    try:
        data = msgspec.yaml.decode(path.read_bytes())
        _check_entries(data)
        return msgspec.convert(data, Catalog)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    except OSError as exc:
        raise CatalogError(f"cannot read the catalog {path}: {exc.strerror}") from None


def _check_entries(data: object) -> None:
    """Validate entries one by one so an error names the model (msgspec's path shows `[...]` for keys)."""
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        return
    for name, entry in models.items():
        try:
            msgspec.convert(entry, CatalogEntry)
        except msgspec.ValidationError as exc:
            raise msgspec.ValidationError(f"model {name!r}: {exc}") from None
