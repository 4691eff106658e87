"""Quantization tags: reading them from GGUF file names and matching what a user asked for.

Repositories spell one weight type several ways: gpustack writes `FP16` and `Q3_K`, ggml-org
`q8_0`, others `F16` and `Q3_K_M`. llama.cpp's own `llama-quantize` treats `Q3_K`, `Q4_K` and
`Q5_K` as the `_M` size, so those match each other; everything else matches by name, ignoring case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

# The tag is the last `-`/`.`/`_`-separated part of a file name that names a llama.cpp weight type:
# F32, F16/FP16, BF16, Q8_0, Q4_K_M, IQ4_XS, TQ1_0, ... (also as a folder name: `Q4_K_M/model.gguf`).
_TAG = re.compile(r"(?:^|[-._])((?:I|T)?Q\d(?:_[A-Z0-9]+)*|FP?16|FP?32|BF16)$", re.IGNORECASE)
_SPELLINGS = {"FP16": "F16", "FP32": "F32"}
_K_MEDIUM = re.compile(r"^(Q[345]_K)_M$")


class QuantizationError(ValueError):
    """The requested tag is not among the files; the message lists the tags there are."""


def canonical(tag: str) -> str:
    """One spelling per weight type: upper case, `FP16` -> `F16`, `Q4_K_M` -> `Q4_K`."""
    tag = _SPELLINGS.get(tag.upper(), tag.upper())
    medium = _K_MEDIUM.match(tag)
    return medium.group(1) if medium else tag


def tag_of(path: str) -> str | None:
    """The weight type a GGUF's name (or its folder's) says it holds, as spelled there."""
    pure = PurePosixPath(path)
    for name in (pure.name.removesuffix(".gguf").removesuffix(".GGUF"), pure.parent.name):
        found = _TAG.search(name)
        if found:
            return found.group(1)
    return None


def choose_file(files: Iterable[str], wanted: str | None, preferred: Iterable[str], where: str) -> str:
    """The GGUF of `files` holding the weight type `wanted`, or, when nothing was asked for, the
    first of `preferred` the repository has (a repository with one GGUF needs no tag)."""
    ggufs = sorted(f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower())
    if not ggufs:
        raise QuantizationError(f"{where} has no GGUF file")
    by_tag: dict[str, list[str]] = {}
    for f in ggufs:
        tag = tag_of(f)
        by_tag.setdefault(canonical(tag) if tag else "", []).append(f)
    if wanted is None:
        if len(ggufs) == 1:
            return ggufs[0]
        wanted = next((t for t in preferred if canonical(t) in by_tag), None)
        if wanted is None:
            raise QuantizationError(f"{where} holds several GGUF files; choose one with :QUANT "
                                    f"({available(ggufs)}) or name the file")
    matches = by_tag.get(canonical(wanted), [])
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise QuantizationError(f"{where} has no {wanted} file; it has {available(ggufs)}")
    raise QuantizationError(f"{where} has several {wanted} files ({', '.join(matches)}): "
                            f"name the file, as OWNER/REPO/FILE.gguf")


def available(files: Iterable[str]) -> str:
    """The tags of `files` as the repository spells them, for error messages."""
    tags = sorted({tag_of(f) or PurePosixPath(f).name for f in files}, key=str.upper)
    return ", ".join(tags)
