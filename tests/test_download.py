"""Catalog models come through huggingface-hub; a local HTTP server stands in for the hub."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import XLMR, RunningServer, free_port

REPO = "test-org/xlmr-tiny-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub(http.server.ThreadingHTTPServer):
    """Answers `/{repo}/resolve/{revision}/{file}` as the hub does for a plain (non-xet) file."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str, str | None]] = []
        super().__init__(("127.0.0.1", 0), _HubHandler)


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: StandInHub

    def _answer(self, with_body: bool) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("authorization")))
        prefix = f"/{REPO}/resolve/main/"
        data = self.server.files.get(self.path[len(prefix):]) if self.path.startswith(prefix) else None
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    server = StandInHub({"xlmr-tiny-f32.gguf": XLMR.read_bytes()})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        "default: tiny\n"
        "models:\n"
        "  tiny:\n"
        f"    repo: {REPO}\n"
        "    file: xlmr-tiny-f32.gguf\n"
        "    family: bge\n"
        "    context_length: 128\n"
        "    quantization: F32\n"
        "  missing:\n"
        f"    repo: {REPO}\n"
        "    file: not-there.gguf\n"
        "    family: bge\n"
        "    context_length: 128\n"
        "    quantization: F32\n"
    )
    return path


def hub_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    return {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_ETAG_TIMEOUT": "3", **extra}


def test_catalog_model_is_downloaded_once_into_the_cache_and_served(hub, catalog, tmp_path):
    endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
    env = hub_env(tmp_path, endpoint, HF_TOKEN="hf_secret_token")
    srv = RunningServer("--catalog", str(catalog), "--model", "tiny", env=env)
    try:
        srv.wait_ready()
        body = httpx.post(f"{srv.url}/v1/rerank", json={"query": "q", "documents": ["a"]}).json()
        assert body["model"] == "tiny"
    finally:
        srv.stop()
    cached = list((tmp_path / "hf" / "hub").glob("models--test-org--xlmr-tiny-GGUF/snapshots/*/xlmr-tiny-f32.gguf"))
    assert len(cached) == 1 and cached[0].read_bytes() == XLMR.read_bytes()
    file_requests = [r for r in hub.requests if "/resolve/" in r[1]]
    assert [method for method, _, _ in file_requests].count("GET") == 1, hub.requests
    assert all(auth == "Bearer hf_secret_token" for _, _, auth in file_requests), "HF_TOKEN is sent"

    # Offline, the cached file is served without asking the hub.
    hub.requests.clear()
    srv = RunningServer("--catalog", str(catalog), "--model", "tiny", env={**env, "HF_HUB_OFFLINE": "1"})
    try:
        srv.wait_ready()
    finally:
        srv.stop()
    assert [r for r in hub.requests if "/resolve/" in r[1]] == []


def test_unreachable_hub_without_cache_exits_with_one_clear_message(catalog, tmp_path):
    env = hub_env(tmp_path, f"http://127.0.0.1:{free_port()}")
    srv = RunningServer("--catalog", str(catalog), "--model", "tiny", env=env)
    code, out = srv.wait_exit()
    assert code == 1
    assert f"cannot get xlmr-tiny-f32.gguf from the Hugging Face repository {REPO}" in out
    assert "--model /path/to/model.gguf" in out
    assert "Traceback" not in out


def test_a_file_missing_from_the_repository_is_named(hub, catalog, tmp_path):
    env = hub_env(tmp_path, f"http://127.0.0.1:{hub.server_address[1]}")
    srv = RunningServer("--catalog", str(catalog), "--model", "missing", env=env)
    code, out = srv.wait_exit()
    assert code == 1
    assert f"cannot get not-there.gguf from the Hugging Face repository {REPO}" in out
