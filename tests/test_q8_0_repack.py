"""Q8_0 products on AVX512-VNNI CPUs: the patch's CPU_REPACK layout (patches/llama.cpp.patch,
ggml-cpu's repack.cpp) against ggml's own Q8_0 path and against an exact evaluation of the same
quantized values, through the very ggml libraries the service loads. tests/native/q8_0_products.cpp
runs each product and prints what it found; it is built here against the patched sources' headers."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import pytest

from tests.conftest import ROOT

SOURCE = ROOT / "tests" / "native" / "q8_0_products.cpp"
GGML_INCLUDE = (ROOT / ".cache" / f"llama_cpp_python-{importlib.metadata.version('llama-cpp-python')}" / "vendor"
                / "llama.cpp" / "ggml" / "include")
"""`make install` extracts and patches llama-cpp-python's source distribution there."""


def has_vnni() -> bool:
    return "AVX512_VNNI = 1" in llama_cpp.llama_print_system_info().decode()


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict]:
    lib = Path(llama_cpp.__file__).parent / "lib"
    binary = tmp_path_factory.mktemp("native") / "q8_0_products"
    compiler = shutil.which("c++") or "g++"
    subprocess.run([compiler, "-O2", "-std=c++17", f"-I{GGML_INCLUDE}", str(SOURCE), f"-L{lib}", "-lggml",
                    "-lggml-base", "-lggml-cpu", f"-Wl,-rpath,{lib}", "-o", str(binary)], check=True)

    def run(rows: int, cols: int, tokens: int, threads: int, seed: int = 1) -> dict:
        done = subprocess.run([str(binary), str(rows), str(cols), str(tokens), str(threads), str(seed)],
                              capture_output=True, text=True, timeout=120, check=True)
        return json.loads(done.stdout)

    return run


def test_the_program_sees_the_cpu_the_service_sees(products):
    assert products(16, 32, 1, 1)["avx512_vnni"] == has_vnni()


# (rows, cols, tokens, threads). The kernel takes 16-row weight groups in pairs, 6 tokens at a time,
# and a last odd group alone, 8 at a time: one group and one block; pairs with a 1-token tail; two
# pairs and an odd group with 5- and 7-token tails; one group per thread; XLM-R base's FFN shapes;
# more threads than groups
SHAPES = [(16, 32, 1, 1), (64, 256, 37, 2), (80, 96, 23, 1), (48, 96, 23, 3), (3072, 768, 300, 2),
          (768, 3072, 13, 2), (32, 64, 5, 4)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_q8_0_products_equal_an_exact_evaluation_of_the_blocks(products, shape):
    found = products(*shape)
    # ggml's own path is the check on the reference: it rounds the activations' scales to fp16
    assert found["plain_error"] < 1e-3
    if not has_vnni():
        assert "repack_error" not in found, "without AVX512-VNNI, Q8_0 weights are not repacked"
        return
    assert found["repack_supported"]
    assert found["repack_error"] < 2e-6, "only float rounding separates the VNNI products from exact ones"
    assert found["repack_vs_plain"] < 1e-3

