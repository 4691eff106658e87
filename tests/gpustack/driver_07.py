"""GPUStack 0.7.1's own code, run in its environment (.venv-gpustack07) for tests/test_gpustack.py:
the llama-box launcher (LlamaBoxServer), its readiness probe and its rerank usage model. One operation
a call, JSON in (argv[2]), JSON out (stdout); `launch` runs until the server it started exits.

  launch  {"data_dir", "version", "executable", "model_path", "name", "port"}: this server installed
          as llama-box `version` (a backend version of the user's own, which GPUStack does not
          download when its file exists), then started by LlamaBoxServer.start() for a reranker
          model instance on the CPU, with a stand-in for the GPUStack server it would ask.
  ready   {"port"}: serve_manager.is_ready for a llama-box instance.
  usage   {"body"}: the usage middleware's parse of a /v1/rerank answer (routes.rerank.RerankResponse).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace


def instance(port: int, model_path: str = "/m", name: str = "model"):
    from gpustack.schemas.models import ModelInstance

    return ModelInstance.model_validate(dict(
        id=7, name=f"{name}-0", model_id=1, model_name=name, source="local_path", local_path=model_path,
        worker_id=1, worker_ip="127.0.0.1", port=port, ports=[port], gpu_indexes=[],
        computed_resource_claim=dict(offload_layers=0, total_layers=0, ram=0, vram={})))


class StandInServer:
    """The calls LlamaBoxServer makes of the GPUStack server: the worker, the model, and the
    instance's move to `starting` with the model file resolved."""

    def __init__(self, model, worker, model_path: str) -> None:
        self.headers = {}
        self.workers = SimpleNamespace(get=lambda *a, **k: worker, list=lambda *a, **k: SimpleNamespace(items=[worker]))
        self.models = SimpleNamespace(get=lambda *a, **k: model)

        def watch(callback=None, stop_condition=None, params=None):
            assert stop_condition(SimpleNamespace(data={"state": "starting", "resolved_path": model_path}))

        self.model_instances = SimpleNamespace(watch=watch, get=lambda *a, **k: None, update=lambda *a, **k: None)


def launch(data_dir: str, version: str, executable: str, model_path: str, name: str, port: int) -> None:
    import gpustack.worker.backends.llama_box as llama_box
    from gpustack.config.config import Config
    from gpustack.schemas.models import ModelPublic

    config = Config(token="stand-in", data_dir=data_dir)
    binary = Path(config.bin_dir) / "llama-box" / f"llama-box-{version}" / "llama-box"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text(f'#!/bin/sh\nexec {executable} -m server "$@"\n')
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    now = datetime.now(timezone.utc)
    model = ModelPublic(id=1, name=name, source="local_path", local_path=model_path, categories=["reranker"],
                        backend_version=version, created_at=now, updated_at=now)
    worker = SimpleNamespace(id=1, ip="127.0.0.1", status=SimpleNamespace(gpu_devices=[]))
    server = llama_box.LlamaBoxServer(StandInServer(model, worker, model_path), instance(port, model_path, name),
                                      config, worker_id=1)
    os.chdir(binary.parent)
    server.start()  # runs the server and exits with its code


def ready(port: int) -> dict:
    from gpustack.schemas.models import BackendEnum
    from gpustack.worker.serve_manager import is_ready

    return {"ready": bool(is_ready(BackendEnum.LLAMA_BOX, instance(port)))}


def usage(body: dict) -> dict:
    from gpustack.routes.rerank import RerankResponse

    parsed = RerankResponse(**body)
    return {"model": parsed.model, "prompt_tokens": parsed.usage.prompt_tokens,
            "documents": [r.document.text for r in parsed.results]}


OPERATIONS = {"launch": launch, "ready": ready, "usage": usage}

if __name__ == "__main__":
    if sys.argv[1] != "launch":
        logging.disable(logging.CRITICAL)
    try:
        print(json.dumps(OPERATIONS[sys.argv[1]](**json.loads(sys.argv[2]))), flush=True)
    except Exception as exc:
        sys.exit(f"{type(exc).__name__}: {exc}")
