"""The two ways a user starts the Ray Serve application on one machine: `python -m server.ray.app`
(what `make run-ray` runs), stopped with everything it started by SIGTERM, and `serve run` on
deploy/ray/serve.yaml."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
import yaml

from tests.conftest import ROOT, TOLERANCE, XLMR, case, free_port, wait_healthy


def without_ray_address() -> dict[str, str]:
    """So the command starts its own head rather than joining a cluster named in the environment."""
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def stop(proc: subprocess.Popen) -> None:
    """Whatever happened in the test: SIGTERM, then SIGKILL to the whole session, so no Ray
    process outlives it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


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
    proc = subprocess.Popen([sys.executable, "-m", "server.ray.app", "--model", str(XLMR), "--alias", "xlmr-tiny",
                             "--replicas", "2", "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, lambda: read(log), timeout=120)
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
        # Everything it started is gone (checked before the clean-up below kills leftovers).
        deadline = time.monotonic() + 10
        while [pid for pid in started if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in started if alive(pid)]
        assert not left, read(log)[-5000:]
    finally:
        stop(proc)


def test_bad_flags_exit_2_before_starting_ray() -> None:
    result = subprocess.run([sys.executable, "-m", "server.ray.app", "--model", str(XLMR), "--replicas", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=without_ray_address())
    assert result.returncode == 2
    assert "argument --replicas: must be at least 1, not 0" in result.stderr


def test_serve_config_runs_with_serve_run(tmp_path: Path, reference: dict) -> None:
    """deploy/ray/serve.yaml as a user runs it (`serve run`), with the fixture for the model and one
    CPU per replica so it fits this machine."""
    config = yaml.safe_load((ROOT / "deploy" / "ray" / "serve.yaml").read_text())
    port = free_port()
    config["http_options"].update(host="127.0.0.1", port=port)
    (application,) = config["applications"]
    name = application["args"]["server"]["models"][0]
    application["args"]["server"].update(models=[str(XLMR)], aliases=[name], threads=1)
    for deployment in application["deployments"]:
        if deployment["name"] == name:
            deployment["ray_actor_options"]["num_cpus"] = 1
            deployment["autoscaling_config"]["max_replicas"] = 2
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "serve"), "run", str(path)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, env=without_ray_address(), start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, lambda: read(log), timeout=120)
        panda = case(reference, "panda")
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/rerank", timeout=30,
                            json={"query": panda["query"], "documents": panda["documents"]}).json()
        assert answer["model"] == name
        by_index = {r["index"]: r["relevance_score"] for r in answer["results"]}
        assert [by_index[i] for i in range(len(panda["scores"]))] == pytest.approx(panda["scores"], abs=TOLERANCE)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
