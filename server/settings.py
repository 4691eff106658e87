"""How a model is loaded and run, free of llama.cpp: the configuration builds these, and only the
engine that takes them loads llama.cpp (the Ray gateway never does)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

# Where the checkpoint converter's environment is set up on first use (server/provision/conversion.py).
DEFAULT_CONVERTER_ENV = Path(__file__).resolve().parent.parent / ".venv-convert"


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How to load a model; every field maps to a command-line flag."""

    ctx_size: int | None = None
    """Longest pair in tokens; default: the context length the model was trained with."""
    threads: int | None = None
    gpu_layers: int = 0
    flash_attn: bool = True
    """Measured on 2-core CPUs: flash attention nearly doubles encoder throughput (REFERENCE.md)."""
    batch_tokens: int = 256
    """Token budget of one decode; pairs are packed up to it, a longer pair goes alone. Measured on
    2-core CPUs (scripts/benchmark.py): 256 beat 512 and 2048; attention cost grows with the square
    of the ubatch, so large packed decodes are slower there. On a GPU, larger budgets pay off."""
    use_mmap: bool = True
    tensor_split: tuple[float, ...] = ()
    """Proportions of the model per GPU; empty: llama.cpp's own split (by free memory)."""
    main_gpu: int = 0
    split_mode: Literal["none", "layer", "row"] = "layer"
    instruction: str | None = None
    """Default task instruction for a model whose rerank template has one (a catalog entry's)."""
