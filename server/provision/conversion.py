"""Hugging Face checkpoints to GGUF, with llama.cpp's own converter from the sources the engine runs.

Community GGUFs of rerankers are often broken (Qwen3 without its `cls.output` head or its rerank
template); llama.cpp's maintainers answer "convert it with convert_hf_to_gguf.py". The converter
imports torch and transformers, which the serving environment must not carry, so it runs in an
environment of its own, set up on first use: llama.cpp's `convert_hf_to_gguf.py`, `conversion/` and
`gguf-py/` taken from the llama-cpp-python source distribution of the version the engine is built
from, with the project's patch applied as to the engine's build (it adds gte-multilingual-reranker's
architecture), so a conversion writes exactly what this engine reads.

`python -m server.provision.conversion --setup [--env DIR]` sets the environment up ahead of time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from pathlib import Path

import llama_cpp
from filelock import FileLock

from ..engine.backend import ensure_backend, usable_cores
from ..engine.llama_build import PATCH
from ..settings import DEFAULT_CONVERTER_ENV
from .quantization import canonical

log = logging.getLogger(__name__)

# Pinned as llama.cpp's requirements-convert_hf_to_gguf.txt asks (torch >= 2.6, transformers,
# sentencepiece, protobuf); these versions converted every fixture of this project.
REQUIREMENTS = ["torch==2.13.0", "transformers==5.23.0", "sentencepiece==0.2.3", "protobuf>=4.21",
                "numpy", "safetensors"]
# Every package of the environment, as CI installed it (`make lock` refreshes it; scripts/lock.py).
CONVERTER_CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints-converter.txt"
# Extra pip arguments for the environment, e.g. an index with CPU-only torch wheels.
PIP_ARGS_VARIABLE = "RERANK_CONVERTER_PIP_ARGS"

# Architectures (config.json's `architectures[0]`) the converter turns into a rank head this engine
# serves faithfully, each with its default weight type for CPU serving (README, Performance: weight
# types): encoders in F32, which scored 1.26x faster than F16 (and Q8_0) on this project's CPU with
# no drift at all; Qwen3 rerankers (0.6-8B, where F32 would take 2.4-32 GB) in F16, as fast as Q8_0
# there with a 27th of its drift.
CONVERTIBLE = {
    "XLMRobertaForSequenceClassification": "F32",
    "NewForSequenceClassification": "F32",
    "BertForSequenceClassification": "F32",
    "ModernBertForSequenceClassification": "F32",
    "Qwen3ForCausalLM": "F16",
    "Qwen2ForCausalLM": "F16",  # mxbai-rerank-v2, read from its "1"/"0" logits (engine/causal.py)
    "GemmaForCausalLM": "F16",  # bge-reranker-v2-gemma, read from its "Yes" logit (engine/causal.py)
}
# Weight types the converter writes itself; others are quantized from F16 by llama.cpp's quantizer.
CONVERTER_TYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16", "Q8_0": "q8_0"}
QUANTIZER_TYPES = {
    "Q2_K": "Q2_K", "Q3_K": "Q3_K_M", "Q3_K_S": "Q3_K_S", "Q3_K_L": "Q3_K_L", "Q4_0": "Q4_0",
    "Q4_1": "Q4_1", "Q4_K": "Q4_K_M", "Q4_K_S": "Q4_K_S", "Q5_0": "Q5_0", "Q5_1": "Q5_1",
    "Q5_K": "Q5_K_M", "Q5_K_S": "Q5_K_S", "Q6_K": "Q6_K",
}
# The checkpoint files the converter reads; weights in safetensors, else PyTorch's format.
CHECKPOINT_SUFFIXES = (".json", ".model", ".txt", ".md", ".tiktoken", ".py")


class ConversionError(RuntimeError):
    """The checkpoint cannot be converted; the message names the architecture or the step."""


def checkpoint_files(files: list[str]) -> list[str]:
    """The top-level files of a repository the converter needs (not ONNX or other exports in folders)."""
    top = [f for f in files if "/" not in f]
    weights = [f for f in top if f.endswith(".safetensors")] or [f for f in top if f.endswith(".bin")]
    return sorted([f for f in top if f.endswith(CHECKPOINT_SUFFIXES)] + weights)


def architecture(checkpoint: Path) -> str:
    try:
        return json.loads((checkpoint / "config.json").read_text())["architectures"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise ConversionError(f"{checkpoint / 'config.json'} does not name the model's architecture") from None


def conversion_type(arch: str, repo: str, wanted: str | None) -> str:
    """The weight type to convert to; refuses, before any weights are downloaded, what the
    converter would not turn into a servable reranker."""
    if arch not in CONVERTIBLE:
        raise ConversionError(
            f"{repo} is a {arch} checkpoint; this server converts only rerankers whose architecture "
            f"llama.cpp turns into a rank head it serves faithfully: {', '.join(CONVERTIBLE)}"
        )
    if arch == "Qwen3ForCausalLM" and "reranker" not in repo.lower():
        # llama.cpp's converter writes the yes/no head only for models it recognises as
        # Qwen3-Reranker (by name or README); a plain Qwen3 LM would convert to a non-reranker.
        raise ConversionError(f"{repo} is a Qwen3 language model, not a Qwen3-Reranker")
    if arch == "Qwen2ForCausalLM" and "mxbai-rerank" not in repo.lower():
        # Converted as a plain LM; the engine knows mxbai-rerank-v2 by the name the file carries.
        raise ConversionError(f"{repo} is a Qwen2 language model, not an mxbai-rerank-v2 reranker")
    if arch == "GemmaForCausalLM" and "bge-reranker" not in repo.lower():
        raise ConversionError(f"{repo} is a Gemma language model, not a bge-reranker-v2-gemma reranker")
    tag = canonical(wanted or CONVERTIBLE[arch])
    if tag in CONVERTER_TYPES:
        return tag
    if tag in QUANTIZER_TYPES:
        return QUANTIZER_TYPES[tag]
    raise ConversionError(f"cannot convert {repo} to {wanted}; weight types: "
                          f"{', '.join([*CONVERTER_TYPES, *QUANTIZER_TYPES.values()])}")


def converted_path(repo_cache: Path, commit: str, repo: str, quantization: str) -> Path:
    """Under the hub cache, keyed by repository, revision and type: huggingface-hub's cache tools
    ignore the extra folder, and a new revision of the checkpoint is converted anew."""
    return repo_cache / "converted" / commit / f"{repo.split('/')[1]}-{quantization}.gguf"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class ConverterEnv:
    """A virtual environment with torch and transformers, and llama.cpp's converter sources."""

    def __init__(self, root: Path = DEFAULT_CONVERTER_ENV) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.sources = root / "llama.cpp"
        self._marker = root / ".ready"

    @property
    def wanted(self) -> str:
        return json.dumps({"llama_cpp_python": llama_cpp.__version__, "requirements": REQUIREMENTS,
                           "constraints": _digest(CONVERTER_CONSTRAINTS),
                           "patch": hashlib.sha256(PATCH.read_bytes()).hexdigest()})

    def is_ready(self) -> bool:
        return self._marker.is_file() and self._marker.read_text() == self.wanted

    def ensure(self) -> None:
        """Set the environment up unless it is ready (one process at a time)."""
        if self.is_ready():
            return
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root) + ".lock"):
            if self.is_ready():
                return
            log.warning("setting up the checkpoint converter in %s, once: a Python environment with "
                        "torch (CPU) and transformers (about 1 GB); this takes a few minutes", self.root)
            started = time.monotonic()
            shutil.rmtree(self.root, ignore_errors=True)
            self._run([sys.executable, "-m", "venv", str(self.root)], "creating the environment")
            pip = [str(self.python), "-m", "pip", "install", "--quiet",
                   *(["--constraint", str(CONVERTER_CONSTRAINTS)] if CONVERTER_CONSTRAINTS.is_file() else []),
                   *os.environ.get(PIP_ARGS_VARIABLE, "").split()]
            self._run([*pip, *REQUIREMENTS], "installing torch and transformers")
            self._fetch_sources()
            self._run([*pip, str(self.sources / "gguf-py")], "installing llama.cpp's gguf-py")
            self._marker.write_text(self.wanted)
            log.info("converter ready in %.0fs", time.monotonic() - started)

    def _fetch_sources(self) -> None:
        """llama.cpp's converter from the sdist of the llama-cpp-python version the engine runs, with
        the project's patch (src/ and ggml-cpu's sources come too, so that the patch applies whole)."""
        version = llama_cpp.__version__
        with tempfile.TemporaryDirectory() as tmp:
            self._run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                       "-d", tmp, f"llama-cpp-python=={version}"], f"downloading llama-cpp-python {version}'s sources")
            (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
            prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
            wanted = tuple(f"{prefix}{part}" for part in ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "src/",
                                                           "ggml/src/ggml-cpu/"))
            with tarfile.open(sdist) as tar:
                members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
                for member in members:
                    member.name = member.name[len(prefix):]
                tar.extractall(self.sources, members=members, filter="data")
        try:
            with PATCH.open() as patch:
                result = subprocess.run(["patch", "--quiet", "--forward", "-p1", "-d", str(self.sources)],
                                        stdin=patch, capture_output=True, text=True)
        except FileNotFoundError:
            raise ConversionError("setting up the converter needs the `patch` program "
                                  "(Debian and Ubuntu: apt-get install patch)") from None
        if result.returncode != 0:
            raise ConversionError(f"applying {PATCH.name} to the converter failed:\n{result.stdout}")

    @staticmethod
    def _run(command: list[str], what: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ConversionError(f"setting up the converter failed while {what}:\n{result.stderr[-2000:]}")

    def convert(self, checkpoint: Path, repo: str, out: Path, quantization: str) -> None:
        """Write `out` (weight type `quantization`, as conversion_type() names it) from the checkpoint
        folder, showing the converter's progress as it goes."""
        self.ensure()
        outtype = CONVERTER_TYPES.get(quantization, "f16")
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out) + ".lock"):
            if out.is_file():
                return
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                # The converter recognises Qwen3 rerankers by their folder's name, so the checkpoint
                # is shown to it under the repository's name rather than the snapshot's commit.
                named = Path(tmp) / repo.split("/")[1]
                named.mkdir()
                for item in checkpoint.iterdir():
                    (named / item.name).symlink_to(item.resolve())
                converted = Path(tmp) / f"converted-{outtype}.gguf"
                self._run_converter(named, converted, outtype)
                if quantization not in CONVERTER_TYPES:
                    quantize(converted, Path(tmp) / "quantized.gguf", quantization)
                    converted = Path(tmp) / "quantized.gguf"
                converted.replace(out)

    def _run_converter(self, checkpoint: Path, out: Path, outtype: str) -> None:
        log.info("converting %s to %s with llama.cpp's convert_hf_to_gguf.py", checkpoint.name, outtype)
        command = [str(self.python), str(self.sources / "convert_hf_to_gguf.py"), str(checkpoint),
                   "--outfile", str(out), "--outtype", outtype]
        tail: deque[str] = deque(maxlen=15)
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                tail.append(line)
        if proc.returncode != 0:
            raise ConversionError(f"llama.cpp's converter failed on {checkpoint.name} "
                                  f"(exit {proc.returncode}):\n{''.join(tail)}")


def quantize(source: Path, out: Path, ftype_name: str) -> None:
    """llama.cpp's quantizer (`llama-quantize`), through the engine's own library."""
    log.info("quantizing to %s", ftype_name)
    ensure_backend()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")
    params.nthread = usable_cores()
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params) != 0:
        raise ConversionError(f"llama.cpp could not quantize the converted model to {ftype_name}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m server.provision.conversion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", required=True,
                        help="set the converter environment up now rather than on first use")
    parser.add_argument("--env", type=Path, default=DEFAULT_CONVERTER_ENV,
                        help=f"its folder (default {DEFAULT_CONVERTER_ENV})")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    try:
        ConverterEnv(args.env).ensure()
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
