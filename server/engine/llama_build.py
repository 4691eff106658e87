"""Whether the llama.cpp this process loaded was built with the project's patch.

`make install` builds llama-cpp-python from its sources with `patches/llama.cpp.patch`, which
adds the `gte` architecture (gte-multilingual-reranker-base) and BERT cross-encoders' token types.
Asking for `gte` stands for the whole patch, which is applied whole. A wheel from PyPI or pip's cache has
the same version number but not the architecture; such a build must not be used by mistake, so the
service asks llama.cpp itself, once, by loading the header of a GGUF that names the architecture.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import llama_cpp

PATCHED_ARCHITECTURES = ("gte",)
# The project's patch to llama.cpp: applied by `make install` to the engine's build and by
# conversion.py to the converter's sources.
PATCH = Path(__file__).resolve().parents[2] / "patches" / "llama.cpp.patch"


class UnpatchedEngineError(RuntimeError):
    """llama.cpp lacks an architecture the project's patch adds; the message says how to rebuild."""


def check_architectures(architectures: tuple[str, ...] = PATCHED_ARCHITECTURES) -> None:
    missing = [arch for arch in architectures if not knows_architecture(arch)]
    if missing:
        raise UnpatchedEngineError(
            f"this llama-cpp-python {llama_cpp.__version__} was built without the project's patch "
            f"(patches/{PATCH.name}): llama.cpp does not know the architecture {', '.join(missing)}. Build it "
            f"with `make clean install` (CMAKE_ARGS passes through for CUDA or Metal)."
        )


def knows_architecture(arch: str) -> bool:
    """Load only the header and vocabulary of a GGUF with no tensors and no vocabulary: llama.cpp
    fails at once on an architecture it does not know."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{arch}-probe.gguf"
        path.write_bytes(_probe_gguf(arch))
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if model is None:
            return False
        llama_cpp.llama_model_free(model)
        return True


def _probe_gguf(arch: str) -> bytes:
    """A GGUF v3 header with the hyper-parameters every encoder loader reads, and no vocabulary."""
    u32, f32, string = 4, 6, 8

    def text(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    metadata: list[tuple[str, int, bytes]] = [
        ("general.architecture", string, text(arch)),
        (f"{arch}.context_length", u32, struct.pack("<I", 512)),
        (f"{arch}.embedding_length", u32, struct.pack("<I", 64)),
        (f"{arch}.feed_forward_length", u32, struct.pack("<I", 128)),
        (f"{arch}.block_count", u32, struct.pack("<I", 1)),
        (f"{arch}.attention.head_count", u32, struct.pack("<I", 1)),
        (f"{arch}.attention.layer_norm_epsilon", f32, struct.pack("<f", 1e-12)),
        ("tokenizer.ggml.model", string, text("none")),
    ]
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    return header + b"".join(text(key) + struct.pack("<I", kind) + value for key, kind, value in metadata)

