"""`python -m server.ray_app` (what `make run-ray` runs): a local Ray head serving the API, stopped
with everything it started by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TOLERANCE, XLMR, case, free_port
from tests.test_ray import wait_healthy


def children(pid: int) -> set[int]:
    """Every process descended from `pid`."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            child = int(stat.parent.name)
            if int(fields[1]) == parent and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_serves_through_a_local_head_and_stops_on_sigterm(reference: dict) -> None:
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "server.ray_app", "--model", str(XLMR), "--alias", "xlmr-tiny",
                             "--replicas", "2", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        panda = case(reference, "panda")
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", timeout=30,
                            json={"query": panda["query"], "documents": panda["documents"]}).json()
        assert answer["model"] == "xlmr-tiny"
        by_index = {r["index"]: r["relevance_score"] for r in answer["results"]}
        assert [by_index[i] for i in range(len(panda["scores"]))] == pytest.approx(panda["scores"], abs=TOLERANCE)
        started = children(proc.pid)
        assert len(started) >= 3  # Ray's GCS, raylet and workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        output = log.read()
    assert not [pid for pid in started if alive(pid)], output


def test_bad_flags_exit_2_before_starting_ray() -> None:
    result = subprocess.run([sys.executable, "-m", "server.ray_app", "--model", str(XLMR), "--replicas", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "RAY_ADDRESS": ""})
    assert result.returncode == 2
    assert "argument --replicas: must be at least 1, not 0" in result.stderr
