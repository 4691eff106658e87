"""GPUStack v2 as the judge: its own code (gpustack 2.3.0, in .venv-gpustack, run by
tests/gpustack/driver.py) checks the backend definition in deploy/gpustack/, renders the command its
worker would give the container, probes readiness, rewrites requests as its proxy does, and records
usage from this server's answers, while the server runs here as a process (GPUStack itself would run
it in a container: no container engine is here).

The requests are the seed documents' (../shared/seeds/000, 001 and 003).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .conftest import QWEN3, ROOT, XLMR, RunningServer, free_port

GPUSTACK_PYTHON = ROOT / ".venv-gpustack" / "bin" / "python"
DRIVER = Path(__file__).parent / "gpustack" / "driver.py"
BACKEND = ROOT / "deploy" / "gpustack" / "rerank-server.yaml"

PANDA = {"query": "What is a panda?", "top_n": 3, "documents": [
    "hi", "it is a bear",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear "
    "species endemic to China."]}
"""Seeds 000 (qwen3-reranker-4b) and 001 (bge-reranker-v2-m3): GPUStack's rerank documentation."""
REGOLO = {"query": "Given a web search query, retrieve relevant passages that answer the query\n<Query>: What is "
                   "the capital of China?",
          "documents": ["<Document>: The capital of China is Beijing.",
                        "<Document>: Gravity is a force that attracts two bodies towards each other..."]}
"""Seed 003: a Qwen3 request with the template's markers written by hand."""
QWEN3_TEMPLATES = {"GPUSTACK_APPLY_QWEN3_RERANKER_TEMPLATES": "true"}


def gpustack(operation: str, **arguments) -> dict:
    assert GPUSTACK_PYTHON.exists(), f"{GPUSTACK_PYTHON} is missing: `make test` installs GPUStack's environment"
    done = subprocess.run([str(GPUSTACK_PYTHON), str(DRIVER), operation, json.dumps(arguments)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_backend_definition_validates_with_gpustacks_classes():
    checked = gpustack("validate", path=str(BACKEND))
    assert checked == {"backend_name": "rerank-server-custom", "versions": ["cpu-custom", "cuda-custom"],
                       "health_check_path": "/health"}


def test_gpustack_refuses_a_definition_it_would_not_import(tmp_path):
    """The check can fail: GPUStack wants a custom backend's name to end in -custom."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(BACKEND.read_text().replace("backend_name: rerank-server-custom", "backend_name: rerank-server"))
    done = subprocess.run([str(GPUSTACK_PYTHON), str(DRIVER), "validate", json.dumps({"path": str(bad)})],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "-custom" in done.stderr


def rendered_server(model: Path, name: str, parameters: list[str], env: dict[str, str] | None = None):
    """The server started with exactly the arguments GPUStack's worker renders for the cpu version;
    the image's entrypoint (`python -m server`, Dockerfile) is this interpreter's."""
    port = free_port()
    plan = gpustack("render", path=str(BACKEND), version="cpu-custom", model_path=str(model), port=port,
                    model_name=name, parameters=parameters, env=env or {})
    assert plan["entrypoint"] is None and plan["image"][0] == "rerank-server:cpu", "the image's own entrypoint"
    return RunningServer(*plan["args"], port=port), plan["args"]


def wait_ready_by_gpustack(srv: RunningServer, timeout: float = 120) -> int:
    """GPUStack's readiness probe until it says ready; how many probes said not ready first."""
    deadline, refused = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        assert srv.proc.poll() is None, srv.output()[-3000:]
        if gpustack("ready", port=srv.port, path="/health")["ready"]:
            return refused
        refused += 1
    raise TimeoutError("GPUStack never saw the server ready")


def test_gpustack_renders_the_command_and_its_probe_and_usage_recorder_accept_the_server(reference):
    srv, args = rendered_server(XLMR, "bge-reranker-v2-m3", ["--ctx-size 8192", "--max-documents=500"])
    try:
        assert args == ["--model", str(XLMR), "--host", "0.0.0.0", "--port", str(srv.port), "--alias",
                        "bge-reranker-v2-m3", "--ctx-size", "8192", "--max-documents", "500"]
        wait_ready_by_gpustack(srv)
        body = gpustack("mutate", body={"model": "bge-reranker-v2-m3", **PANDA}, env={})
        answer = httpx.post(f"{srv.url}/v1/rerank", json=body, timeout=60)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        usage = gpustack("usage", body=answer.json())
        tokens = answer.json()["usage"]["prompt_tokens"]
        assert usage == {"status": 200, "recorded": [{"input": tokens, "output": 0, "total": tokens,
                                                      "operation": "rerank", "model": "model"}]}
        assert httpx.get(f"{srv.url}/v1/models", timeout=1).json()["data"][0]["id"] == "bge-reranker-v2-m3"
    finally:
        srv.stop()


def test_gpustacks_probe_waits_for_the_model_to_load():
    """/health answers 503 until the model has loaded, so GPUStack does not route to it early."""
    srv, _ = rendered_server(XLMR, "bge-reranker-v2-m3", [])
    try:
        wait_ready_by_gpustack(srv)
        assert httpx.get(f"{srv.url}/health").status_code == 200
    finally:
        output = srv.stop()
    assert "loaded bge-reranker-v2-m3" in output


def test_gpustacks_qwen3_templates_score_exactly_as_the_plain_request():
    """With GPUSTACK_APPLY_QWEN3_RERANKER_TEMPLATES, GPUStack's proxy wraps query and documents in
    Qwen3-Reranker's prompt before they reach the server: the same tokens, scores and usage as the
    plain request, never templated twice; documents come back as GPUStack sent them."""
    srv, _ = rendered_server(QWEN3, "qwen3-reranker-4b", [])
    try:
        wait_ready_by_gpustack(srv)
        for seed in (PANDA, REGOLO):
            plain = {"model": "qwen3-reranker-4b", **seed}
            wrapped = gpustack("mutate", body=dict(plain), env=QWEN3_TEMPLATES)
            assert wrapped["query"] != plain["query"] and wrapped["query"].startswith("<|im_start|>system")
            a = httpx.post(f"{srv.url}/v1/rerank", json=plain, timeout=60).json()
            b = httpx.post(f"{srv.url}/v1/rerank", json=wrapped, timeout=60).json()
            assert a["usage"] == b["usage"]
            assert [(r["index"], r["relevance_score"]) for r in a["results"]] == \
                   [(r["index"], r["relevance_score"]) for r in b["results"]]
            assert [r["document"]["text"] for r in b["results"]] == [wrapped["documents"][r["index"]]
                                                                      for r in b["results"]]
            assert gpustack("usage", body=b)["recorded"][0]["input"] == b["usage"]["prompt_tokens"]
    finally:
        srv.stop()


@pytest.mark.parametrize("return_documents", [True, False])
def test_usage_is_recorded_only_from_answers_with_their_documents(client, return_documents):
    """GPUStack's recorder requires results[].document.text: an answer without documents (asked by
    the client) still reaches the client, unmetered, as with llama-box."""
    answer = client.post("/v1/rerank", json={**PANDA, "return_documents": return_documents}).json()
    usage = gpustack("usage", body=answer)
    assert usage["status"] == 200 and bool(usage["recorded"]) is return_documents
