"""From the `--model` argument to a GGUF file on disk: a local path, or a catalog entry
fetched once through huggingface-hub into its standard cache.

huggingface-hub reads `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` itself, so
they work here as users expect.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from huggingface_hub import constants, hf_hub_download

from .catalog import Catalog, CatalogEntry


class ModelSource(msgspec.Struct, frozen=True, kw_only=True):
    """A model file to serve and, for catalog models, its entry."""

    name: str
    path: str
    entry: CatalogEntry | None = None


class ModelSourceError(RuntimeError):
    """The model cannot be found or fetched; the message says what to do instead."""


def resolve_model(spec: str, catalog: Catalog) -> ModelSource:
    """A catalog name is downloaded (or found in the cache); anything else must be a local .gguf file."""
    if spec in catalog.models:
        entry = catalog.models[spec]
        if entry.refused:
            raise ModelSourceError(f"{spec} cannot be served: {entry.refused}")
        return ModelSource(name=spec, path=fetch(entry), entry=entry)
    path = Path(spec).expanduser()
    if path.is_file():
        return ModelSource(name=path.stem, path=str(path.resolve()))
    if spec.endswith(".gguf") or "/" in spec:
        raise ModelSourceError(f"no such model file: {spec}")
    known = ", ".join(sorted(catalog.models))
    raise ModelSourceError(f"{spec!r} is neither a catalog model ({known}) nor a local .gguf file")


def fetch(entry: CatalogEntry) -> str:
    """The cached file, downloaded with a progress bar the first time."""
    try:
        return hf_hub_download(repo_id=entry.repo, filename=entry.file, revision=entry.revision)
    except Exception as exc:  # the hub client raises many kinds (HTTP, offline, connection, auth)
        raise ModelSourceError(
            f"cannot get {entry.file} from the Hugging Face repository {entry.repo} "
            f"(endpoint {constants.ENDPOINT}): {_reason(exc)}. The file is not in the cache "
            f"({constants.HF_HUB_CACHE}). Download it where the hub can be reached "
            f"(`hf download {entry.repo} {entry.file}`) or serve a local file with "
            f"`--model /path/to/model.gguf`."
        ) from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
