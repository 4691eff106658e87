"""Hostile input and overload against a real server with tight limits."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from .conftest import XLMR, RunningServer

MAX_BODY = 4096


@pytest.fixture(scope="module")
def limited() -> Iterator[RunningServer]:
    srv = RunningServer("--model", str(XLMR), "--max-body-bytes", str(MAX_BODY), "--max-documents", "5",
                        "--max-text-chars", "500")
    srv.wait_ready()
    yield srv
    srv.stop()


def raw_request(srv: RunningServer, head: bytes, body: bytes = b"", timeout: float = 5) -> bytes:
    """Send bytes as they are and return what the server answers before it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


def test_a_declared_oversize_body_is_refused_before_it_is_sent(limited):
    head = (b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    started = time.perf_counter()
    answer = raw_request(limited, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code":413' in answer and str(MAX_BODY).encode() in answer
    assert time.perf_counter() - started < 2


def test_a_client_that_sends_its_whole_oversize_body_before_reading_gets_the_413(limited):
    """urllib sends all 64 MiB before it reads: without lingering close the server's early close
    reset the connection (ECONNRESET) and the client never saw the answer."""
    request = urllib.request.Request(f"{limited.url}/v1/rerank", data=b"x" * (64 * 1024 * 1024),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=60)
    assert err.value.code == 413
    assert "larger than the limit of 4096 bytes" in json.loads(err.value.read())["error"]["message"]


def test_a_chunked_body_is_cut_off_at_the_limit(limited):
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "q", "documents": ["'
        for _ in range(100):
            yield b"a" * 1000
        yield b'"]}'

    r = httpx.post(f"{limited.url}/v1/rerank", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than the limit of 4096 bytes" in r.json()["error"]["message"]


def test_too_many_documents_is_refused_with_the_limit(limited):
    r = httpx.post(f"{limited.url}/v1/rerank", json={"query": "q", "documents": ["a"] * 6})
    assert r.status_code == 413
    assert r.json()["error"]["message"] == "6 documents is more than the limit of 5 per request"


def test_too_long_texts_are_refused(limited):
    r = httpx.post(f"{limited.url}/v1/rerank", json={"query": "q", "documents": ["a", "b" * 501]})
    assert r.status_code == 413 and "document 1 is 501 characters" in r.json()["error"]["message"]
    r = httpx.post(f"{limited.url}/v2/rerank", json={"query": "q" * 501, "documents": ["a"]})
    assert r.status_code == 413 and "the query is 501 characters" in r.json()["error"]["message"]


@pytest.mark.parametrize("body,fragment", [
    (b'{"query": "\xff\xfe", "documents": ["a"]}', "the body is not valid UTF-8 (byte 11)"),
    (b'{"query": "q", "documents": ["a"], "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", "nested too deeply"),
])
def test_invalid_utf8_and_deep_nesting_are_400(limited, body, fragment):
    r = httpx.post(f"{limited.url}/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and fragment in r.json()["error"]["message"]


def test_nul_bytes_and_any_unicode_are_scored(limited):
    documents = ["a\x00b", "\U0001f43c\u200b\ufeff", "\u0301\u0301", "\U0010ffff"]
    r = httpx.post(f"{limited.url}/v1/rerank", json={"query": "q\x00", "documents": documents})
    assert r.status_code == 200 and len(r.json()["results"]) == 4


def test_a_slow_request_times_out_with_504():
    srv = RunningServer("--model", str(XLMR), "--request-timeout", "0.000001")
    try:
        srv.wait_ready()
        r = httpx.post(f"{srv.url}/v1/rerank", json={"query": "q", "documents": ["a"] * 50})
        assert r.status_code == 504 and "its remaining work was dropped" in r.json()["error"]["message"]
        assert httpx.get(f"{srv.url}/health").status_code == 200
    finally:
        srv.stop()


def scored_pairs(srv: RunningServer) -> float:
    text = httpx.get(f"{srv.url}/metrics").text
    line = next(line for line in text.splitlines() if line.startswith("rerank_batch_pairs_sum"))
    return float(line.split()[-1])


def test_a_client_that_hangs_up_has_its_pairs_dropped():
    # One pair per decode, so a 1,000-document request takes many decodes.
    srv = RunningServer("--model", str(XLMR), "--batch-tokens", "1", "--threads", "1")
    try:
        srv.wait_ready()
        doc = "the giant panda is a bear species endemic to China " * 8
        body = json.dumps({"query": "what is a panda?", "documents": [doc] * 1000}).encode()
        head = (f"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(head + body)
            time.sleep(0.3)
        time.sleep(1.0)
        dropped_at = scored_pairs(srv)
        time.sleep(0.5)
        assert scored_pairs(srv) == dropped_at, "no more pairs are scored after the client left"
        assert dropped_at < 1000
        assert httpx.get(f"{srv.url}/health").status_code == 200
    finally:
        srv.stop()


def test_sigterm_finishes_in_flight_work_and_exits_0():
    srv = RunningServer("--model", str(XLMR), "--batch-tokens", "1", "--shutdown-grace", "20")
    srv.wait_ready()
    result: dict[str, httpx.Response] = {}
    documents = ["the giant panda is a bear " * 10] * 300

    def call() -> None:
        result["r"] = httpx.post(f"{srv.url}/v1/rerank", json={"query": "q", "documents": documents}, timeout=60)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    os.kill(srv.proc.pid, signal.SIGTERM)
    thread.join(timeout=60)
    code, out = srv.wait_exit()
    assert result["r"].status_code == 200 and len(result["r"].json()["results"]) == 300
    assert code == 0, out


def test_requests_still_running_after_the_grace_get_the_503_envelope():
    """Fuzzer finding 4: uvicorn cancels what outlives --shutdown-grace, which used to be a plain-text
    500 and a log of "Task exception was never retrieved"."""
    srv = RunningServer("--model", str(XLMR), "--batch-tokens", "1", "--threads", "1", "--shutdown-grace", "1")
    srv.wait_ready()
    documents = [f"{i} " + "the giant panda is a bear " * 20 for i in range(300)]
    answers: list[httpx.Response] = []

    def call() -> None:
        answers.append(httpx.post(f"{srv.url}/v1/rerank", json={"query": "q", "documents": documents}, timeout=60))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    os.kill(srv.proc.pid, signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    code, out = srv.wait_exit()
    assert [r.status_code for r in answers] == [503] * 4, out
    for r in answers:
        assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "1"
        assert r.json()["error"]["type"] == "unavailable_error" and "shut down" in r.json()["error"]["message"]
    assert "never retrieved" not in out and "Exception in ASGI application" not in out
    assert code == 0, out


def test_an_engine_fault_is_a_500_with_the_request_id_and_the_server_keeps_serving(monkeypatch):
    """The real engine, with llama.cpp's decode failing as an unexpected fault would."""
    from starlette.testclient import TestClient

    from server.app import create_app
    from server.engine import context as engine_module
    from server.engine.gguf_info import read_gguf_info
    from server.provision.plan import ModelPlan
    from server.provision.sources import ModelSource
    from server.registry import ModelRegistry, ModelSlot
    from server.settings import EngineSettings

    slot = ModelSlot(ModelPlan(name="x", source=ModelSource(name="x", path=str(XLMR)), info=read_gguf_info(XLMR),
                               settings=EngineSettings()))
    slot.load()
    decodes = []

    def failing_decode(ctx, batch):
        decodes.append(batch.n_tokens)
        return -3

    monkeypatch.setattr(engine_module.llama_cpp, "llama_decode", failing_decode)
    client = TestClient(create_app(ModelRegistry([slot])), raise_server_exceptions=False)
    try:
        for attempt in range(2):
            r = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]},
                            headers={"X-Request-ID": f"req-{attempt}"})
            assert r.status_code == 500
            error = r.json()["error"]
            assert error["type"] == "server_error" and f"request req-{attempt}" in error["message"]
            assert "RuntimeError" in error["message"] and "llama_decode" not in error["message"]
        assert len(decodes) == 2, "each request reached llama.cpp's decode"
        assert client.get("/health").status_code == 200
    finally:
        slot.unload()


def test_cors_is_off_unless_configured(client):
    preflight = {"Origin": "https://search.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/rerank", headers=preflight).headers
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://x"}).headers

    srv = RunningServer("--model", str(XLMR), "--cors-origin", "https://search.example")
    try:
        srv.wait_ready()
        r = httpx.options(f"{srv.url}/v1/rerank", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://search.example"
        other = httpx.options(f"{srv.url}/v1/rerank", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        srv.stop()


def test_errors_never_reveal_file_system_paths(client):
    for body in ({"query": "q", "documents": ["a"], "model": "/etc/passwd"},
                 {"query": "q", "documents": ["a"], "model": "../../models/x.gguf"}):
        r = client.post("/v1/rerank", json=body)
        assert r.status_code == 200, "with one model served the name is only echoed, never opened"
        assert r.json()["model"] == body["model"]
    r = client.post("/v1/rerank", content=b"{", headers={"content-type": "application/json"})
    assert str(XLMR.parent) not in r.text


def test_load_of_misbehaving_clients_leaves_the_server_healthy():
    from .conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from load import run_load

    srv = RunningServer("--model", str(XLMR), "--log-level", "warning")
    try:
        srv.wait_ready()
        sizes = (1, 3, 4, 10, 25)
        run_load(srv.url, srv.proc.pid, requests=20, concurrency=8, seed=1, sizes=sizes)  # warm-up
        report = run_load(srv.url, srv.proc.pid, requests=100, concurrency=32, seed=2, sizes=sizes)
    finally:
        out = srv.stop()
    summary = report.summary()
    assert set(report.statuses) == {200}, summary
    assert report.half_requests == 10 and report.hang_ups == 10
    assert report.healthy_after
    assert report.rss_after_kb - report.rss_before_kb < 64 * 1024, summary
    assert "Traceback" not in out
