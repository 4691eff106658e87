"""What `--model` may say, parsed into one Struct before anything is fetched.

The forms are the ones users type elsewhere: a catalog name (`bge-reranker-v2-m3`), a catalog
name with a weight type (`bge-reranker-v2-m3:Q8_0`, GPUStack's quantization choice), any Hugging
Face repository with an optional weight type (`gpustack/bce-reranker-base_v1-GGUF:Q4_K_M`, as
llama-server's `-hf`), one file of a repository (`owner/repo/path/file.gguf`), a local file, or a local folder holding a
downloaded repository (GGUF files, or a checkpoint to convert).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import msgspec

from .catalog import Catalog, CatalogEntry

_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")
_QUANT = re.compile(r"^[\w.]+$")


class ModelSpecError(ValueError):
    """`--model` names nothing this server can find; the message lists the accepted forms."""


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["local", "folder", "catalog", "repo", "file"]
    text: str
    """As the user typed it."""
    path: str | None = None
    """kind local: the file."""
    name: str | None = None
    """kind catalog: the entry's name."""
    entry: CatalogEntry | None = None
    """The catalog entry of a catalog name, or of a repository the catalog knows."""
    repo: str | None = None
    filename: str | None = None
    """kind file: the GGUF's path inside the repository."""
    quantization: str | None = None
    """The weight type asked for (`:QUANT`), as typed."""

    @property
    def served_name(self) -> str:
        """The catalog name, else the repository's model name (`-GGUF` dropped), else the file stem."""
        if self.name:
            return self.name
        if self.repo:
            return re.sub(r"[-_.]gguf$", "", self.repo.split("/")[1], flags=re.IGNORECASE)
        if self.kind == "folder":
            return re.sub(r"[-_.]gguf$", "", Path(str(self.path)).name, flags=re.IGNORECASE)
        return Path(self.path or self.text).stem


def parse_model_spec(text: str, catalog: Catalog) -> ModelSpec:
    path = Path(text).expanduser()
    if path.is_file():
        return ModelSpec(kind="local", text=text, path=str(path.resolve()))
    if path.is_dir():  # a downloaded repository, as GPUStack v2 passes {{model_path}}
        return ModelSpec(kind="folder", text=text, path=str(path.resolve()))
    if text.startswith(("/", "./", "../", "~")) or (text.endswith(".gguf") and text.count("/") < 2):
        raise ModelSpecError(f"no such model file: {text}")
    base, quant = _split_quantization(text)
    name = _catalog_name(base, catalog)
    if name is not None:
        return ModelSpec(kind="catalog", text=text, name=name, entry=catalog.models[name],
                         repo=catalog.models[name].repo, quantization=quant)
    if _REPO.match(base):
        return ModelSpec(kind="repo", text=text, repo=base, quantization=quant,
                         entry=_entry_of_repo(base, catalog))
    parts = text.split("/")
    if len(parts) >= 3 and text.lower().endswith(".gguf") and _REPO.match("/".join(parts[:2])):
        repo = "/".join(parts[:2])
        return ModelSpec(kind="file", text=text, repo=repo, filename="/".join(parts[2:]),
                         entry=_entry_of_repo(repo, catalog))
    known = ", ".join(sorted(catalog.models))
    raise ModelSpecError(
        f"--model {text!r} is none of: a catalog name ({known}), NAME:QUANT, a Hugging Face "
        f"repository OWNER/REPO[:QUANT], a file OWNER/REPO/FILE.gguf, a local .gguf file, or a local folder "
        f"holding GGUF files or a checkpoint"
    )


def _split_quantization(text: str) -> tuple[str, str | None]:
    base, colon, quant = text.rpartition(":")
    if colon and base and _QUANT.match(quant):
        return base, quant
    return text, None


def _catalog_name(base: str, catalog: Catalog) -> str | None:
    """Catalog names match ignoring case: users type `qwen3-reranker-4b` as often as the hub's spelling."""
    return next((name for name in catalog.models if name.lower() == base.lower()), None)


def _entry_of_repo(repo: str, catalog: Catalog) -> CatalogEntry | None:
    """A repository the catalog knows keeps the entry's context length and instruction."""
    return next((e for e in catalog.models.values() if e.repo.lower() == repo.lower()), None)
