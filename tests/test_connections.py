"""Slow and oversized requests, over raw sockets against the real server (fuzzer findings 1-3): a
head or a body that never finishes is answered 408 and closed, a head past the limit 431, and
the server keeps serving everyone else."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from .conftest import XLMR, RunningServer

HEAD_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
MAX_HEAD = 8192


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    srv = RunningServer("--model", str(XLMR), "--header-timeout", str(HEAD_TIMEOUT),
                        "--body-timeout", str(BODY_TIMEOUT), "--max-header-bytes", str(MAX_HEAD))
    srv.wait_ready()
    yield srv
    srv.stop()


def connect(srv: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.settimeout(10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a server that never closes fails on the socket timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_answer(sock: socket.socket, raw: bytes) -> bytes:
    """`raw` completed to its head and its Content-Length of body (they may come in separate segments)."""
    sock.settimeout(10)
    while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _content_length(raw):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed inside the answer: {raw!r}"
        raw += chunk
    return raw


def _content_length(raw: bytes) -> int:
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
    return next(int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.startswith("content-length:"))


def answer(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_error(raw: bytes, status: int, fragment: str) -> None:
    code, headers, body = answer(raw)
    assert code == status and headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert body["error"]["code"] == status and fragment in body["error"]["message"], body


def test_an_idle_connection_is_closed_after_the_head_timeout(srv):
    with connect(srv) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""
        assert HEAD_TIMEOUT - 0.1 < time.monotonic() - started < HEAD_TIMEOUT + 2


def test_a_head_that_never_finishes_is_a_408(srv):
    with connect(srv) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n")
        assert_error(read_all(sock), 408, f"the request head did not arrive within {HEAD_TIMEOUT:g} s")


def test_a_head_sent_a_line_at_a_time_is_not_given_more_time(srv):
    """A header line every 0.3 s does not restart the clock: the head as a whole is late."""
    with connect(srv) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\n")
        sock.settimeout(0.3)
        raw = b""
        for n in range(20):
            try:
                sock.sendall(b"X-Drip-%d: x\r\n" % n)
                raw += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if raw:
                break
        sock.settimeout(10)
        raw += read_all(sock)
        assert_error(raw, 408, "the request head did not arrive")
        assert time.monotonic() - started < HEAD_TIMEOUT + 2


def test_a_body_that_never_finishes_is_a_408(srv):
    """Content-Length 1000 and a byte every 0.3 s: the body's own deadline, not --request-timeout."""
    with connect(srv) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        sock.settimeout(0.3)
        raw = b""
        for _ in range(30):
            try:
                sock.sendall(b" ")
                raw += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if raw:
                break
        assert raw, "no answer while the body trickled in"
        assert time.monotonic() - started < BODY_TIMEOUT + 2
        raw = read_answer(sock, raw)
        _, _, body = raw.partition(b"\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 408") and b"connection: close" in raw.lower()
        assert json.loads(body)["error"]["message"] == f"the request body did not arrive within {BODY_TIMEOUT:g} s"


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n",
    b"GET /health?%s HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s",  # never finished: refused before it ends
], ids=["header", "url", "unfinished"])
def test_a_head_past_the_limit_is_a_431(srv, head):
    big = b"a" * (4 * MAX_HEAD)
    with connect(srv) as sock:
        sock.sendall(head % big)
        assert_error(read_all(sock), 431, f"larger than the limit of {MAX_HEAD} bytes")


def test_a_head_within_the_limit_and_keep_alive_are_served(srv):
    """Heads up to the limit pass; several requests on one connection each get their own deadline."""
    with httpx.Client(base_url=srv.url) as client:
        assert client.get("/health", headers={"X-Fill": "a" * (MAX_HEAD - 500)}).status_code == 200
        for _ in range(3):
            r = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
            assert r.status_code == 200
            time.sleep(HEAD_TIMEOUT / 2)


def test_the_server_serves_others_while_slow_clients_wait(srv):
    slow = [connect(srv) for _ in range(20)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n")
        r = httpx.post(f"{srv.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=5)
        assert r.status_code == 200
        for sock in slow:
            assert answer(read_all(sock))[0] == 408
    finally:
        for sock in slow:
            sock.close()
    assert httpx.get(f"{srv.url}/health").status_code == 200


def test_a_large_body_is_not_counted_as_head(srv):
    """A whole request in one read (head and an 80 KB body) is within the head limit."""
    documents = ["the giant panda is a bear " * 10] * 300
    body = json.dumps({"query": "q", "documents": documents}).encode()
    with connect(srv) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        code, _, answered = answer(read_all(sock))
    assert code == 200 and len(answered["results"]) == 300
