"""A local HTTP server that answers as the Hugging Face hub does for what huggingface-hub asks:
the repository listing (`model_info`) and plain (non-xet) file downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"

_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<revision>[^/?]+))?(?:\?.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>[^?]+)")


class StandInHub(http.server.ThreadingHTTPServer):
    """Serves `repos` ({"owner/name": {"path/in/repo": bytes}}) at one commit, recording every request
    as (method, path, Authorization header)."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.requests: list[tuple[str, str, str | None]] = []
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> StandInHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def listing_requests(self) -> list[str]:
        return [path for _, path, _ in self.requests if path.startswith("/api/models/")]

    def file_requests(self, method: str = "GET") -> list[str]:
        return [path for m, path, _ in self.requests if m == method and "/resolve/" in path]


def checkpoint_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: StandInHub

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, with_body: bool) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("authorization")))
        info, resolve = _INFO.match(self.path), _RESOLVE.match(self.path)
        if info and info["repo"] in self.server.repos:
            files = self.server.repos[info["repo"]]
            body = json.dumps({"id": info["repo"], "sha": COMMIT,
                               "siblings": [{"rfilename": name} for name in sorted(files)]}).encode()
            self._send(200, body, with_body, {"Content-Type": "application/json"})
        elif resolve and resolve["path"] in self.server.repos.get(resolve["repo"], {}):
            data = self.server.repos[resolve["repo"]][resolve["path"]]
            self._send(200, data, with_body, {"X-Repo-Commit": COMMIT,
                                              "ETag": f'"{hashlib.sha256(data).hexdigest()}"'})
        elif resolve and resolve["repo"] in self.server.repos:
            self._send(404, b"", with_body, {"X-Error-Code": "EntryNotFound"})
        else:
            self._send(404, b"", with_body, {"X-Error-Code": "RepoNotFound"})

    def _send(self, status: int, body: bytes, with_body: bool, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass
