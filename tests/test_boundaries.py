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

HTTP = ["http.routes", "http.errors", "http.middleware", "http.body_limit", "http.connection", "http.lingering",
        "http.openapi", "http.docs", "http.schemas", "http.metrics", "app"]
# The clients' wire formats: Structs and the functions to and from a job, nothing of a server.
DIALECTS = ["dialects.jina", "dialects.tei", "dialects.infinity", "dialects.cohere", "dialects.vllm"]
# From a job to ranked documents, in this process.
SERVING = ["jobs", "faults", "limits", "scoring", "settings", "service", "scheduler", "rerank", "registry"]
ENGINE = ["engine.context", "engine.backend", "engine.batch", "engine.servable", "engine.pairs", "engine.layout",
          "engine.causal",
          "engine.windows", "engine.classifier", "engine.gguf_info", "engine.llama_build"]
# Pure: pairs are made from a tokenize function, servability from a GGUF header.
WITHOUT_LLAMA_CPP = ["engine.pairs", "engine.layout", "engine.windows", "engine.servable", "engine.gguf_info",
                     "engine.causal"]
# From --model to a checked GGUF on disk.
PROVISION = ["provision.catalog", "provision.model_spec", "provision.quantization", "provision.hub",
             "provision.sources", "provision.conversion", "provision.plan"]
HTTP_MODULES = {"starlette", "uvicorn", "server.http", "server.dialects"}

FORBIDDEN = {
    **{module: {"llama_cpp", "ray"} for module in HTTP},
    **{module: {"llama_cpp", "ray", "starlette", "server.service"} for module in DIALECTS},
    **{module: {"ray", *HTTP_MODULES} for module in SERVING + PROVISION},
    # The engine knows neither how requests arrive nor how models are found.
    **{module: {"ray", "server.provision", "server.registry", *HTTP_MODULES} for module in ENGINE},
    **{module: {"llama_cpp", "ray", "server.provision", "server.registry", *HTTP_MODULES}
       for module in WITHOUT_LLAMA_CPP},
    # The Ray gateway reserves no CPU: it routes and shapes answers, and must not load llama.cpp.
    "ray.gateway": {"llama_cpp", "server.engine.context", "server.registry"},
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
    assert "llama_cpp" in imported_by("engine.context") and "starlette" in imported_by("http.routes")
