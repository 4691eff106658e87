"""From the `--model` argument to a GGUF file on disk.

A local path is used as it is. Anything on the Hugging Face hub is found by listing its repository:
a GGUF repository's file is chosen by its weight type (`:QUANT`, else the catalog's default), and a
repository holding an original checkpoint (config.json and weights, no GGUF) is converted once with
llama.cpp's own converter. Every file then goes through the engine's servability checks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from . import hub
from .catalog import Catalog, CatalogEntry
from .conversion import (
    ConversionError,
    ConverterEnv,
    architecture,
    checkpoint_files,
    conversion_type,
    converted_path,
)
from .model_spec import ModelSpec, ModelSpecError, parse_model_spec
from .quantization import QuantizationError, canonical, choose_file, tag_of

# Without `:QUANT`, a GGUF repository's file is the first of these it has: F16 keeps encoder scores
# within 4e-4 of F32 and was faster than Q8_0 on CPU (README, Performance: weight types); Q8_0 is
# how most Qwen3 GGUFs come.
PREFERRED_TYPES = ("F16", "Q8_0", "BF16", "F32")


class ModelSource(msgspec.Struct, frozen=True, kw_only=True):
    """A model file to serve, where it came from, and its catalog entry if it has one."""

    name: str
    path: str
    entry: CatalogEntry | None = None
    repository: str | None = None
    file: str | None = None
    """The GGUF's name in its repository (or the converted file's name)."""
    quantization: str | None = None
    converted: bool = False


class ModelSourceError(RuntimeError):
    """The model cannot be found, fetched or converted; the message says what to do instead."""


def resolve_model(text: str, catalog: Catalog, converter: ConverterEnv) -> ModelSource:
    try:
        spec = parse_model_spec(text, catalog)
        if spec.kind == "local":
            return ModelSource(name=spec.served_name, path=str(spec.path))
        if spec.kind == "folder":
            return _from_folder(spec, converter)
        return _from_hub(spec, converter)
    except (ModelSpecError, hub.HubError, QuantizationError, ConversionError) as exc:
        raise ModelSourceError(str(exc)) from None


def _from_hub(spec: ModelSpec, converter: ConverterEnv) -> ModelSource:
    repo = str(spec.repo)
    revision = spec.entry.revision if spec.entry else "main"
    if spec.kind == "file":
        return _gguf(spec, repo, str(spec.filename), revision)
    listing = hub.list_repo(repo, revision)
    wanted = spec.quantization or (spec.entry.quantization if spec.entry else None)
    if any(f.lower().endswith(".gguf") for f in listing.files):
        where = f"{repo} (as cached: HF_HUB_OFFLINE or hub unreachable)" if listing.from_cache else repo
        return _gguf(spec, repo, choose_file(listing.files, wanted, PREFERRED_TYPES, where), revision)
    if "config.json" in listing.files:
        return _converted(spec, listing, wanted, converter)
    raise ModelSourceError(f"{repo} holds neither GGUF files nor a Hugging Face checkpoint (config.json)")


def _from_folder(spec: ModelSpec, converter: ConverterEnv) -> ModelSource:
    """A repository downloaded to a folder (GPUStack v2's `{{model_path}}` for a checkpoint): one of
    its GGUF files, or its checkpoint converted once into the hub cache, keyed by the files' sizes
    and times, so a changed checkpoint is converted anew."""
    folder = Path(str(spec.path))
    files = sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file())
    if any(f.lower().endswith(".gguf") for f in files):
        filename = choose_file(files, spec.quantization, PREFERRED_TYPES, str(folder))
        tag = tag_of(filename)
        return ModelSource(name=spec.served_name, path=str(folder / filename), file=filename,
                           quantization=canonical(tag) if tag else None)
    if "config.json" not in files:
        raise ModelSourceError(f"{folder} holds neither GGUF files nor a Hugging Face checkpoint (config.json)")
    repo = f"{folder.parent.name}/{folder.name}"  # the hub's OWNER/REPO, as GPUStack lays out its cache
    tag = conversion_type(architecture(folder), repo, spec.quantization)
    stamp = hashlib.sha256(repr([(f, (folder / f).stat().st_size, (folder / f).stat().st_mtime_ns)
                                 for f in checkpoint_files(files)]).encode()).hexdigest()[:16]
    out = converted_path(hub.repo_cache_dir(repo), f"folder-{stamp}", repo, tag)
    if not out.is_file():
        converter.convert(folder, repo, out, tag)
    return ModelSource(name=spec.served_name, path=str(out), file=out.name, quantization=tag, converted=True)


def _gguf(spec: ModelSpec, repo: str, filename: str, revision: str) -> ModelSource:
    """A GGUF of the repository, from the cache or downloaded."""
    tag = tag_of(filename)
    return ModelSource(name=spec.served_name, path=hub.download(repo, filename, revision), entry=spec.entry,
                       repository=repo, file=filename, quantization=canonical(tag) if tag else None)


def _converted(spec: ModelSpec, listing: hub.RepoListing, wanted: str | None,
               converter: ConverterEnv) -> ModelSource:
    """The checkpoint's GGUF from the conversion cache, converted first if it is not there."""
    repo = listing.repo
    config = hub.download_files(repo, ["config.json"], listing.revision)
    tag = conversion_type(architecture(config), repo, wanted)
    out = converted_path(hub.repo_cache_dir(repo), listing.commit, repo, tag)
    if not out.is_file():
        checkpoint = hub.download_files(repo, checkpoint_files(listing.files), listing.revision)
        converter.convert(checkpoint, repo, out, tag)
    return ModelSource(name=spec.served_name, path=str(out), entry=spec.entry, repository=repo,
                       file=out.name, quantization=tag, converted=True)
