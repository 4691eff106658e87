"""What Ray Serve costs and buys on one machine: the service direct against the same service
through Ray Serve's proxy (`python -m server.ray.app`), on the same GGUF and workloads as
scripts/benchmark.py.

1. Proxy latency: p50/p95 of the 3-document request, one process with T threads against one Ray
   replica with T threads (what the HTTP proxy, the gateway deployment and the handle call add).
2. Replicas against threads: documents/s of two replicas of T/2 threads each against one process
   of T threads, on the 64-document request (one request reaches one replica) and on the
   concurrent workload (16 clients of 4-document requests, which both replicas share).

The three configurations run one after another, so the load average printed with each counts.

Usage (`make bench-ray`):
    .venv/bin/python scripts/benchmark_ray.py [--gguf FILE] [--threads 2] [--out bench-ray.json]
Without --gguf the base shape of scripts/benchmark.py is used (generated there, once, under the
fixture venv).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as bench  # noqa: E402  (the sibling script: workloads, servers, statistics)


def ray_command(gguf: Path, port: int, replicas: int, threads: int) -> list[str]:
    return [str(bench.SERVICE_PYTHON), "-m", "server.ray.app", "--model", str(gguf), "--host", bench.HOST,
            "--port", str(port), "--replicas", str(replicas), "--threads", str(threads),
            "--log-level", "warning", "--request-timeout", str(bench.REQUEST_TIMEOUT)]


def measure(server: bench.Server, workloads: bench.Workloads, latency_runs: int, bulk_runs: int) -> dict[str, Any]:
    with httpx.Client(timeout=bench.REQUEST_TIMEOUT) as client:
        latency, bulk = bench.measure_one(client, server.url, workloads, latency_runs, bulk_runs)
    wall, latencies = asyncio.run(bench.run_concurrent(server.url, workloads.concurrent))
    concurrent_docs = sum(len(r.documents) for requests in workloads.concurrent for r in requests)
    return {
        "latency_ms": {"p50": bench.percentile(latency, 50) * 1000, "p95": bench.percentile(latency, 95) * 1000},
        "bulk_docs_per_s": len(workloads.bulk.documents) / statistics.median(bulk),
        "concurrent_docs_per_s": concurrent_docs / wall,
        "concurrent_p95_ms": bench.percentile(latencies, 95) * 1000,
        "load_average": bench.load_average(),
    }


def markdown(results: dict[str, Any]) -> str:
    direct, one, two = (results["runs"][k] for k in ("direct", "ray-1", "ray-2"))
    t = results["threads"]
    lines = [
        f"Model: {results['model']}; {t} threads in all; load averages (1/5/15 min) after each run: "
        + "; ".join(f"{k} {'/'.join(f'{x:.2f}' for x in r['load_average'])}" for k, r in results["runs"].items()),
        "",
        "| configuration | 3-doc p50 | 3-doc p95 | 64-doc docs/s | concurrent docs/s | concurrent p95 |",
        "|---|---|---|---|---|---|",
    ]
    labels = {"direct": f"one process, {t} threads", "ray-1": f"Ray: 1 replica x {t} threads",
              "ray-2": f"Ray: 2 replicas x {t // 2} thread{'s' if t // 2 > 1 else ''}"}
    for key, run in results["runs"].items():
        lines.append(f"| {labels[key]} | {run['latency_ms']['p50']:.1f} ms | {run['latency_ms']['p95']:.1f} ms "
                     f"| {run['bulk_docs_per_s']:.1f} | {run['concurrent_docs_per_s']:.1f} "
                     f"| {run['concurrent_p95_ms']:.0f} ms |")
    lines += [
        "",
        f"Ray's proxy adds {one['latency_ms']['p50'] - direct['latency_ms']['p50']:.1f} ms to the 3-document p50 "
        f"({one['latency_ms']['p50'] / direct['latency_ms']['p50']:.2f}x). Two replicas against one process: "
        f"{two['bulk_docs_per_s'] / direct['bulk_docs_per_s']:.2f}x on the 64-document request, "
        f"{two['concurrent_docs_per_s'] / direct['concurrent_docs_per_s']:.2f}x on the concurrent workload.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", type=Path, help="reranker GGUF (default: scripts/benchmark.py's base shape)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="CPU threads in all (even)")
    p.add_argument("--latency-runs", type=int, default=30)
    p.add_argument("--bulk-runs", type=int, default=3)
    p.add_argument("--work-dir", type=Path, default=bench.DEFAULT_WORK_DIR)
    p.add_argument("--out", type=Path, default=Path("bench-ray.json"))
    opts = p.parse_args(argv)
    if opts.threads < 2 or opts.threads % 2:
        p.error("--threads must be even: two replicas share them")
    gguf = opts.gguf or bench.ensure_model(bench.parse_args(["--shape", "base", "--work-dir", str(opts.work_dir)]))[0]
    workloads = bench.make_workloads(clients=16, requests_per_client=2, bulk_docs=64, docs_per_request=4)
    commands = {
        "direct": lambda port: bench.ours_command(gguf, port, opts.threads, 256),
        "ray-1": lambda port: ray_command(gguf, port, 1, opts.threads),
        "ray-2": lambda port: ray_command(gguf, port, 2, opts.threads // 2),
    }
    results: dict[str, Any] = {"model": gguf.name, "threads": opts.threads, "runs": {}}
    for key, command in commands.items():
        port = bench.free_port()
        print(f"{key}: starting", flush=True)
        with bench.running(key, command(port), port, {}, opts.work_dir / "logs" / f"ray-{key}.log") as server:
            results["runs"][key] = measure(server, workloads, opts.latency_runs, opts.bulk_runs)
        print(f"{key}: {json.dumps(results['runs'][key])}", flush=True)
    bench.write_results(opts.out, results, markdown(results))


if __name__ == "__main__":
    main()
