"""Shared fixtures: the committed test models, their transformers references, and a real server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from server.engine.context import RerankEngine
from server.engine.gguf_info import read_gguf_info
from server.settings import EngineSettings

# Scores against the transformers reference. llama.cpp's CPU GELU goes through an f16 lookup table
# and flash attention computes in f16, so an f32 model differs from transformers by up to 4.3e-3
# here (1.95e-3 without flash attention; measured by scripts/make_fixtures.py's author). The
# closest two scores of different documents in a case are 0.0387 apart, so rankings stay checked.
TOLERANCE = 1e-2
TOLERANCE_NO_FLASH_ATTN = 3e-3

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
XLMR = FIXTURES / "xlmr-tiny-f32.gguf"
XLMR_NOKEYS = FIXTURES / "xlmr-tiny-f32-nokeys.gguf"
XLMR_EMBED = FIXTURES / "xlmr-tiny-embed-f32.gguf"
XLMR_JINA_V2 = FIXTURES / "xlmr-tiny-jina-v2-f32.gguf"
XLMR_CHECKPOINT = FIXTURES / "xlmr-tiny-checkpoint"
QWEN3 = FIXTURES / "qwen3-tiny-f16.gguf"
QWEN3_NOHEAD = FIXTURES / "qwen3-tiny-nohead-f16.gguf"
QWEN3_CHECKPOINT = FIXTURES / "qwen3-tiny-checkpoint"
JINA = FIXTURES / "jina-tiny-f32.gguf"
GTE = FIXTURES / "gte-tiny-f32.gguf"


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads((FIXTURES / "xlmr-tiny.reference.json").read_text())


def case(reference: dict, name: str) -> dict:
    return next(c for c in reference["cases"] if c["name"] == name)


@pytest.fixture(scope="session")
def engine() -> Iterator[RerankEngine]:
    engine = RerankEngine(read_gguf_info(XLMR), EngineSettings())
    yield engine
    engine.close()


def assert_ranked_as(body: dict, expected: list[float], prompt_tokens: int, name: str = "",
                     atol: float = TOLERANCE) -> None:
    """A /v1/rerank answer scores every document as `expected`, in its order, with that usage."""
    got = {r["index"]: r["relevance_score"] for r in body["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(expected))], expected, atol=atol, err_msg=name)
    assert [r["index"] for r in body["results"]] == np.argsort(-np.array(expected)).tolist(), name
    assert body["usage"]["prompt_tokens"] == prompt_tokens, name


def fetch_only(model: str, env: dict[str, str]) -> Path:
    """`--model MODEL --fetch-only`, as `make convert` runs it: the path of the GGUF it fetched or converted."""
    code, out = RunningServer("--model", model, "--fetch-only", env=env).wait_exit(timeout=600)
    assert code == 0, out
    return Path(out.strip().splitlines()[-1].split("\t")[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen | None = None, output: Callable[[], str] = str,
                 timeout: float = 60) -> None:
    """Until `GET /health` answers 200; a process that exits first fails at once, with its output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{output()[-5000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy in {timeout:g} s")


class RunningServer:
    """`python -m server` in a subprocess, as a user starts it."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, port: int | None = None) -> None:
        """`port`: the one `args` already name (a command line rendered elsewhere); else a free port is added."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: a pipe nobody drains fills up with access logs and blocks the server.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", *([] if port else ["--port", str(self.port)]), *args],
            cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=self.log, stderr=subprocess.STDOUT, text=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def wait_exit(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        return code, self.output()

    def wait_ready(self, timeout: float = 60) -> None:
        wait_healthy(self.url, self.proc, self.output, timeout)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.output()


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    srv = RunningServer("--model", str(XLMR), "--alias", "xlmr-tiny")
    srv.wait_ready()
    yield srv
    srv.stop()


API_KEY = "sk-test-clients"


@pytest.fixture(scope="session")
def keyed(server: RunningServer) -> Iterator[RunningServer]:
    """The tiny reranker as `xlmr-tiny`, requiring `Authorization: Bearer API_KEY`, as the clients'
    tests run it; started once for the session (after `server`, so the two do not start at once)."""
    srv = RunningServer("--model", str(XLMR), "--alias", "xlmr-tiny", "--api-key", API_KEY)
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
