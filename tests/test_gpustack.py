"""GPUStack as the judge. GPUStack v2's own code (gpustack 2.3.0, in .venv-gpustack, run by
tests/gpustack/driver.py) checks the backend definition in deploy/gpustack/, renders the command its
worker would give the container, probes readiness, rewrites requests as its proxy does, forwards them
through its server's and worker's proxies, and records usage from this server's answers, while the
server runs here as a process (GPUStack itself would run it in a container: no container engine is
here). GPUStack 0.7.1's llama-box launcher (tests/gpustack/driver_07.py, in .venv-gpustack07) starts
the server in llama-box's place.

The requests are the seed documents' (../shared/seeds/000, 001 and 003).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import QWEN3, ROOT, TOLERANCE, XLMR, XLMR_CHECKPOINT, RunningServer, case, free_port

GPUSTACK_PYTHON = ROOT / ".venv-gpustack" / "bin" / "python"
DRIVER = Path(__file__).parent / "gpustack" / "driver.py"
GPUSTACK07_PYTHON = ROOT / ".venv-gpustack07" / "bin" / "python"
DRIVER_07 = Path(__file__).parent / "gpustack" / "driver_07.py"
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


def gpustack(operation: str, *, python: Path = GPUSTACK_PYTHON, driver: Path = DRIVER, **arguments) -> dict:
    assert python.exists(), f"{python} is missing: `make test` installs GPUStack's environments"
    done = subprocess.run([str(python), str(driver), operation, json.dumps(arguments)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def gpustack07(operation: str, **arguments) -> dict:
    return gpustack(operation, python=GPUSTACK07_PYTHON, driver=DRIVER_07, **arguments)


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


def rendered_server(model: Path, name: str, parameters: list[str], process_env: dict[str, str] | None = None):
    """The server started with exactly the arguments GPUStack's worker renders for the cpu version;
    the image's entrypoint (`python -m server`, Dockerfile) is this interpreter's."""
    port = free_port()
    plan = gpustack("render", path=str(BACKEND), version="cpu-custom", model_path=str(model), port=port,
                    model_name=name, parameters=parameters, env={})
    assert plan["entrypoint"] is None and plan["image"][0] == "rerank-server:cpu", "the image's own entrypoint"
    return RunningServer(*plan["args"], port=port, env=process_env), plan["args"]


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


def through_gpustack(srv: RunningServer, model: str, requests: list[dict], env: dict[str, str] | None = None):
    """The requests as a client sends them, with a GPUStack API key, to GPUStack 2.3.0's own server app
    (create_app), whose proxy forwards them through its worker's own inference proxy to `srv`; only the
    database's rows are stood in (driver.py `proxy`). Each answer, with what GPUStack's usage recorder
    buffered for it and what GPUStack logged at warning level."""
    run = gpustack("proxy", port=srv.port, model=model, env=env or {}, requests=requests)
    assert run["database_connections"] == 0, "GPUStack made a lookup that no stand-in answered"
    return run["answers"]


def direct(srv: RunningServer, path: str, bodies: list[dict]) -> list[httpx.Response]:
    """The server's own answers to the requests, sent to it directly."""
    return [httpx.post(f"{srv.url}{path}", json=body, timeout=60) for body in bodies]


def answer_of(text: str) -> dict:
    """An answer less what differs between two answers to one request: its id and time."""
    body = json.loads(text)
    body.pop("id", None)
    body.pop("created", None)
    return body


def metered(tokens: int, model: str) -> list[dict]:
    """What GPUStack's recorder buffers for a rerank answer of `tokens` prompt tokens: one row, under
    the key's user and the key."""
    return [{"input": tokens, "output": 0, "total": tokens, "operation": "rerank", "model": model, "user_id": 3,
             "api_key": True}]


def test_gpustacks_proxy_forwards_the_seed_and_meters_its_v1_rerank_answer():
    """Seed 001 through GPUStack: its /v1/rerank route and /v1/score (its proxy forwards that too) reach
    the server by way of the worker, and the client gets the server's own answer. GPUStack's usage
    middleware meters /v1/rerank with the server's prompt tokens and has no branch for /v1/score, which
    is answered but not metered. /v2/rerank is routed by GPUStack's gateway (Higress) alone: its
    server's proxy answers 404 while the server itself serves it. A wrong key never reaches the server."""
    srv, _ = rendered_server(XLMR, "bge-reranker-v2-m3", [])
    rerank = {"model": "bge-reranker-v2-m3", **PANDA}
    score = {"model": "bge-reranker-v2-m3", "text_1": PANDA["query"], "text_2": PANDA["documents"]}
    try:
        wait_ready_by_gpustack(srv)
        proxied = through_gpustack(srv, "bge-reranker-v2-m3", [
            {"path": "/v1/rerank", "body": rerank}, {"path": "/v1/score", "body": score},
            {"path": "/v2/rerank", "body": rerank},
            {"path": "/v1/rerank", "body": rerank, "key": "gpustack_0123456789abcdef_" + "0" * 32}])
        answers = direct(srv, "/v1/rerank", [rerank]) + direct(srv, "/v1/score", [score]) + \
            direct(srv, "/v2/rerank", [rerank])
    finally:
        srv.stop()
    for got, answer in zip(proxied[:2], answers[:2]):
        assert (got["status"], got["content_type"], got["logged"]) == (200, "application/json", [])
        assert answer_of(got["body"]) == answer_of(answer.text)
    assert proxied[0]["recorded"] == metered(answers[0].json()["usage"]["prompt_tokens"], "bge-reranker-v2-m3")
    assert proxied[1]["recorded"] == [], "GPUStack 2.3.0 meters no /v1/score answer"
    assert (proxied[2]["status"], answers[2].status_code) == (404, 200), "only GPUStack's gateway routes /v2/rerank"
    assert proxied[3]["status"] == 401 and proxied[3]["recorded"] == []


def test_the_qwen3_seeds_through_gpustacks_proxy_are_answered_and_metered_as_the_server_answers():
    """Seeds 000 and 003 through GPUStack's proxy to a Qwen3 reranker, without and with
    GPUSTACK_APPLY_QWEN3_RERANKER_TEMPLATES in the deployment's environment: the client gets the
    server's answer to the request as GPUStack forwards it (wrapped on /v1/rerank when the templates are
    on), with the plain request's scores and usage, and GPUStack meters the server's prompt tokens;
    /v1/score is forwarded as sent, and not metered."""
    srv, _ = rendered_server(QWEN3, "qwen3-reranker-4b", [])
    seeds = [{"model": "qwen3-reranker-4b", **seed} for seed in (PANDA, REGOLO)]
    scores = [{"model": "qwen3-reranker-4b", "text_1": seed["query"], "text_2": seed["documents"]}
              for seed in (PANDA, REGOLO)]
    try:
        wait_ready_by_gpustack(srv)
        plain, scored = direct(srv, "/v1/rerank", seeds), direct(srv, "/v1/score", scores)
        for env in ({}, QWEN3_TEMPLATES):
            proxied = through_gpustack(srv, "qwen3-reranker-4b",
                                       [{"path": "/v1/rerank", "body": body} for body in seeds]
                                       + [{"path": "/v1/score", "body": body} for body in scores], env=env)
            forwarded = [gpustack("mutate", body=dict(body), env=env) for body in seeds] if env else seeds
            assert all(body["query"].startswith("<|im_start|>system") for body in forwarded) is bool(env)
            for got, answer, alone in zip(proxied[:2], direct(srv, "/v1/rerank", forwarded), plain):
                assert (got["status"], got["content_type"], got["logged"]) == (200, "application/json", [])
                assert answer_of(got["body"]) == answer_of(answer.text)
                assert answer.json()["usage"] == alone.json()["usage"]
                assert [(r["index"], r["relevance_score"]) for r in answer.json()["results"]] == \
                       [(r["index"], r["relevance_score"]) for r in alone.json()["results"]]
                assert got["recorded"] == metered(answer.json()["usage"]["prompt_tokens"], "qwen3-reranker-4b")
            for got, answer in zip(proxied[2:], scored):
                assert (got["status"], got["recorded"], got["logged"]) == (200, [], [])
                assert answer_of(got["body"]) == answer_of(answer.text)
    finally:
        srv.stop()


@pytest.mark.parametrize("return_documents", [True, False])
def test_usage_is_recorded_only_from_answers_with_their_documents(client, return_documents):
    """GPUStack's recorder requires results[].document.text: an answer without documents (asked by
    the client) still reaches the client, unmetered, as with llama-box."""
    answer = client.post("/v1/rerank", json={**PANDA, "return_documents": return_documents}).json()
    usage = gpustack("usage", body=answer)
    assert usage["status"] == 200 and bool(usage["recorded"]) is return_documents


def test_a_checkpoint_folder_as_gpustack_passes_it_is_converted_and_served(tmp_path, reference):
    """GPUStack v2 downloads a Hugging Face checkpoint to a folder (cache/huggingface/OWNER/REPO) and
    passes it as {{model_path}}: the server converts it once, into the hub cache, and scores as the
    checkpoint's transformers reference."""
    folder = tmp_path / "huggingface" / "test-org" / "xlmr-tiny"
    shutil.copytree(XLMR_CHECKPOINT, folder)
    srv, _ = rendered_server(folder, "xlmr-tiny", [], process_env={"HF_HOME": str(tmp_path / "hf"),
                                                                 "HF_HUB_OFFLINE": "1"})
    try:
        wait_ready_by_gpustack(srv, timeout=600)
        c = case(reference, "panda")
        body = httpx.post(f"{srv.url}/v1/rerank", json={"query": c["query"], "documents": c["documents"]},
                          timeout=60).json()
        card = httpx.get(f"{srv.url}/v1/models").json()["data"][0]
    finally:
        log = srv.stop()
    scores = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([scores[i] for i in range(len(c["documents"]))], c["scores"], atol=TOLERANCE)
    assert card["meta"]["converted"] is True and card["meta"]["quantization"] == "F32"
    assert "converting xlmr-tiny to f32" in log
    converted = list((tmp_path / "hf" / "hub" / "models--test-org--xlmr-tiny" / "converted").glob("folder-*/*.gguf"))
    assert [p.name for p in converted] == ["xlmr-tiny-F32.gguf"]


def read(log) -> str:
    log.seek(0)
    return log.read()


def test_gpustack_071_starts_the_server_in_llama_boxs_place(tmp_path):
    """GPUStack 0.7.1's LlamaBoxServer.start() runs this server as llama-box (a backend version of the
    user's own) with its llama-box command line: its /health probe sees it ready, the seed request is
    answered on llama-box's scale (normalize on, its default), its usage model reads the answer, and a
    document past the model's positions under its --ctx-size 8192 is answered with the process up."""
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")
    launcher = subprocess.Popen(
        [str(GPUSTACK07_PYTHON), str(DRIVER_07), "launch", json.dumps({
            "data_dir": str(tmp_path / "gpustack"), "version": "v0.0.171-rerank", "executable": sys.executable,
            "model_path": str(XLMR), "name": "bge-reranker-v2-m3", "port": port})],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not gpustack07("ready", port=port)["ready"]:
            assert launcher.poll() is None and time.monotonic() < deadline, read(log)[-3000:]
            time.sleep(0.5)
        answer = httpx.post(f"{url}/v1/rerank", json={"model": "bge-reranker-v2-m3", **PANDA}, timeout=60)
        long = httpx.post(f"{url}/v1/rerank", json={"query": "q", "documents": ["panda bear china " * 400]},
                          timeout=60)
        still_ready = gpustack07("ready", port=port)["ready"]
    finally:
        os.killpg(launcher.pid, signal.SIGTERM)
        launcher.wait(timeout=30)
    output = read(log)
    assert answer.status_code == 200 and long.status_code == 200 and still_ready
    body = answer.json()
    assert all(0.001 <= r["relevance_score"] <= 0.999 for r in body["results"]), "llama-box's normalize default"
    assert gpustack07("usage", body=body) == {
        "model": "bge-reranker-v2-m3", "prompt_tokens": body["usage"]["prompt_tokens"],
        "documents": [PANDA["documents"][r["index"]] for r in body["results"]]}
    assert "Starting llama-box server" in output and "--embeddings has no effect here" in output
    assert "is more than the 128 positions" in output, "GPUStack's --ctx-size 8192 is clamped, with a warning"
