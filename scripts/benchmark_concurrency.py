"""Documents/s and p95 latency against the number of concurrent clients, this service against
llama-server on the same GGUF, plotted (matplotlib) into the PNG the README shows.

Each client sends `--requests-per-client` 4-document requests one after another; the clients run
at once; 1, 2, 4, 8 and 16 clients in turn on the same two running servers (each at the settings
scripts/benchmark.py found best on this machine: ours --batch-tokens 256, llama-server -np 4 -ub 512).

Usage (`make bench-concurrency`):
    .venv/bin/python scripts/benchmark_concurrency.py [--gguf FILE] [--llama-server BIN] [--out docs/concurrency.json]
The plot is drawn under the fixture venv (matplotlib), beside --out as a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as bench  # noqa: E402  (the sibling script: workloads, servers, statistics)

CLIENTS = (1, 2, 4, 8, 16)
PEER = bench.PeerSettings(parallel=4, ubatch=512)


def sweep(server: bench.Server, requests_per_client: int) -> list[dict[str, float]]:
    points = []
    for clients in CLIENTS:
        workloads = bench.make_workloads(clients, requests_per_client, bulk_docs=4, docs_per_request=4)
        asyncio.run(bench.run_concurrent(server.url, workloads.concurrent[:1]))  # warm-up
        wall, latencies = asyncio.run(bench.run_concurrent(server.url, workloads.concurrent))
        documents = sum(len(r.documents) for requests in workloads.concurrent for r in requests)
        points.append({"clients": clients, "docs_per_s": documents / wall,
                       "p95_ms": bench.percentile(latencies, 95) * 1000, "load_average": bench.load_average()[0]})
        print(f"{server.name} {clients} clients: {points[-1]}", flush=True)
    return points


def plot(results_path: Path) -> None:
    """Under the fixture venv: two panels, documents/s and p95 latency, against clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = json.loads(results_path.read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in results["servers"].items():
        clients = [p["clients"] for p in points]
        left.plot(clients, [p["docs_per_s"] for p in points], marker="o", label=name)
        right.plot(clients, [p["p95_ms"] / 1000 for p in points], marker="o", label=name)
    for axis, label in ((left, "documents/s"), (right, "p95 request latency (s)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        axis.set_xlabel("concurrent clients (4-document requests)")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    left.set_ylim(bottom=0)
    fig.suptitle(results["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(results_path.with_suffix(".png"), dpi=110)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_plot"]:
        plot(Path(args[1]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", type=Path, help="reranker GGUF (default: scripts/benchmark.py's base shape)")
    p.add_argument("--llama-server", type=Path, help="llama-server binary (default: build one)")
    p.add_argument("--llama-src", type=Path, help="llama.cpp sources (default: the sdist)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--requests-per-client", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=bench.DEFAULT_WORK_DIR)
    p.add_argument("--out", type=Path, default=Path("docs/concurrency.json"))
    opts = p.parse_args(args)
    bench_opts = bench.parse_args(["--work-dir", str(opts.work_dir),
                                   *(["--llama-src", str(opts.llama_src)] if opts.llama_src else []),
                                   *(["--llama-server", str(opts.llama_server)] if opts.llama_server else [])])
    gguf = opts.gguf or bench.ensure_model(bench_opts)[0]
    binary = bench.ensure_llama_server(bench_opts)
    commands = {
        "ours": lambda port: bench.ours_command(gguf, port, opts.threads, 256),
        "llama-server": lambda port: bench.peer_command(binary, gguf, port, opts.threads, PEER),
    }
    servers: dict[str, Any] = {}
    start_load = bench.load_average()
    for name, command in commands.items():
        port = bench.free_port()
        log = opts.work_dir / "logs" / f"concurrency-{name}.log"
        with bench.running(name, command(port), port, {}, log) as server:
            servers[name] = sweep(server, opts.requests_per_client)
    title = (f"{gguf.name}, {opts.threads} threads, {os.cpu_count()} cores; load average "
             f"{start_load[0]:.1f} at start, {bench.load_average()[0]:.1f} at end")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({"title": title, "servers": servers}, indent=2) + "\n")
    subprocess.run([str(bench.FIXTURE_PYTHON), __file__, "_plot", str(opts.out)], check=True)
    print(f"wrote {opts.out} and {opts.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
