"""The layers import only downwards, so the shape keeps itself.

HTTP layer -> request structs -> rerank service -> scheduler -> engine: the routes know neither
llama.cpp nor Ray (the Ray gateway, which reserves no CPU, must not load llama.cpp), and nothing
below the routes knows HTTP. Each module is imported in a fresh interpreter and what it pulled in
is compared with what its layer may use.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HTTP = ["routes", "app", "errors", "middleware", "limits", "lingering", "openapi", "docs", "schemas", "metrics"]
# Scoring: from a job to ranked documents, in this process.
SCORING = ["jobs", "faults", "scoring", "scheduler", "windows", "layout", "gguf_info", "settings", "engine",
           "classifier", "rerank", "registry", "service"]
# The clients' wire formats: Structs and the functions to and from a job, nothing of a server.
DIALECTS = ["dialects.jina", "dialects.tei", "dialects.infinity", "dialects.cohere"]
# Finding a model file: the catalog, the hub, the converter.
PROVISION = ["catalog", "model_spec", "quantization", "hub", "sources", "conversion"]

FORBIDDEN = {
    **{module: {"llama_cpp", "ray"} for module in HTTP},
    **{module: {"llama_cpp", "ray", "starlette", "server.service"} for module in DIALECTS},
    # The Ray gateway reserves no CPU: it routes and shapes answers, and must not load llama.cpp.
    "ray_gateway": {"llama_cpp", "server.engine", "server.registry"},
    **{module: {"starlette", "uvicorn", "ray", "server.errors", "server.schemas", "server.routes",
                "server.dialects"}
       for module in SCORING + PROVISION},
}
WATCHED = sorted({name for names in FORBIDDEN.values() for name in names})


def imported_by(module: str) -> set[str]:
    probe = (f"import importlib, json, sys; importlib.import_module('server.{module}'); "
             f"print(json.dumps([m for m in {WATCHED!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_a_module_imports_nothing_its_layer_may_not_know(module):
    assert imported_by(module) & FORBIDDEN[module] == set()


def test_the_probe_sees_an_import_across_the_line():
    assert "llama_cpp" in imported_by("engine") and "starlette" in imported_by("routes")
