"""Load test: hundreds of concurrent requests of mixed sizes, plus clients that misbehave.

Drives a running server (or starts one on a GGUF) with a deterministic mix of requests:
well-formed reranks of 1 to 200 documents, clients that send half a body and vanish, and
clients that hang up while their request is being scored. Reports status codes, latency
percentiles and the server's resident memory before and after.

    .venv/bin/python scripts/load.py --model tests/fixtures/xlmr-tiny-f32.gguf --requests 400
    .venv/bin/python scripts/load.py --url http://127.0.0.1:8080 --pid 12345

Only loopback addresses are driven; the loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("panda bear bamboo china forest species endemic giant mountain river search rerank query "
         "document relevance score vector retrieval model token context").split()


@dataclass
class LoadReport:
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    half_requests: int = 0
    hang_ups: int = 0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    healthy_after: bool = False
    seconds: float = 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0

    def summary(self) -> dict:
        return {
            "requests": sum(self.statuses.values()), "statuses": dict(sorted(self.statuses.items())),
            "half_requests": self.half_requests, "hang_ups": self.hang_ups,
            "p50_ms": round(self.percentile(50) * 1000, 1), "p95_ms": round(self.percentile(95) * 1000, 1),
            "p99_ms": round(self.percentile(99) * 1000, 1), "seconds": round(self.seconds, 2),
            "rss_before_mb": round(self.rss_before_kb / 1024, 1), "rss_after_mb": round(self.rss_after_kb / 1024, 1),
            "healthy_after": self.healthy_after,
        }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


SIZES = (1, 3, 4, 10, 25, 50, 100, 200)


def rerank_body(rng: random.Random, sizes: tuple[int, ...] = SIZES) -> dict:
    size = rng.choice(sizes)
    docs = [" ".join(rng.choices(WORDS, k=rng.randint(3, 120))) for _ in range(size)]
    return {"query": " ".join(rng.choices(WORDS, k=rng.randint(1, 12))), "documents": docs,
            "top_n": rng.choice([None, 1, 5])}


def ensure_loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in ("localhost", "::1") and not host.startswith("127."):
        raise SystemExit(f"refusing to load {host}: only loopback addresses are driven")
    return host, parts.port or 80


async def half_request(host: str, port: int, body: bytes) -> None:
    """Announce the whole body, send half of it, and vanish."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"POST /v1/rerank HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()


async def hang_up(client: httpx.AsyncClient, body: dict) -> None:
    """Leave while the request is being scored."""
    try:
        await asyncio.wait_for(client.post("/v1/rerank", json=body), timeout=0.02)
    except (asyncio.TimeoutError, httpx.TransportError):
        pass


async def drive(url: str, requests: int, concurrency: int, seed: int, sizes: tuple[int, ...]) -> LoadReport:
    host, port = ensure_loopback(url)
    rng = random.Random(seed)
    report = LoadReport()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one(i: int) -> None:
            body = rerank_body(rng, sizes)
            kind = i % 10
            async with gate:
                if kind == 0:
                    report.half_requests += 1
                    await half_request(host, port, json.dumps(body).encode())
                elif kind == 1:
                    report.hang_ups += 1
                    await hang_up(client, body)
                else:
                    started = time.perf_counter()
                    r = await client.post("/v1/rerank", json=body)
                    report.latencies.append(time.perf_counter() - started)
                    report.statuses[r.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        report.seconds = time.perf_counter() - started
        await asyncio.sleep(0.5)  # let dropped work drain
        report.healthy_after = (await client.get("/health")).status_code == 200
    return report


def run_load(url: str, pid: int | None, requests: int = 400, concurrency: int = 64, seed: int = 7,
             sizes: tuple[int, ...] = SIZES) -> LoadReport:
    before = rss_kb(pid) if pid else 0
    report = asyncio.run(drive(url, requests, concurrency, seed, sizes))
    report.rss_before_kb, report.rss_after_kb = before, rss_kb(pid) if pid else 0
    return report


def start_server(model: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "server", "--model", model, "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running server on loopback")
    p.add_argument("--pid", type=int, help="its process id, to read its memory")
    p.add_argument("--model", help="start a server on this GGUF instead")
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    proc = None
    if args.model:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = start_server(args.model, port)
        url, pid = f"http://127.0.0.1:{port}", proc.pid
    elif args.url:
        url, pid = args.url, args.pid
    else:
        raise SystemExit("give --model or --url")
    try:
        print(json.dumps(run_load(url, pid, args.requests, args.concurrency, args.seed).summary(), indent=2))
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
