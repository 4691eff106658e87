"""GPUStack v2's own code, run in GPUStack's environment (.venv-gpustack) for tests/test_gpustack.py:
one operation per call, JSON in (argv[2]) and JSON out (stdout). Nothing of this project is imported
here, and nothing of GPUStack is imported by the tests: each side runs its own code.

Operations:
  validate  {"path"}: the backend YAML through the from-yaml import's checks and the community
            document loader (strict).
  render    {"path", "version", "model_path", "port", "model_name", "parameters", "env"}: the
            container entrypoint and arguments GPUStack's worker (CustomServer) builds.
  ready     {"port", "path"}: GPUStack's readiness probe of a model instance.
  mutate    {"body", "env"}: GPUStack's proxy rewriting of a /v1/rerank body (mutate_request).
  usage     {"body"}: what GPUStack's usage middleware records from a /v1/rerank answer.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import sys
from types import SimpleNamespace

import yaml

logging.disable(logging.CRITICAL)


def backend_of(path: str):
    from gpustack.schemas.inference_backend import (
        InferenceBackend,
        InferenceBackendCreate,
        VersionConfig,
        VersionConfigDict,
    )

    entry = yaml.safe_load(open(path))
    versions = VersionConfigDict(root={k: VersionConfig(**v) for k, v in entry["version_configs"].items()})
    created = InferenceBackendCreate.model_validate({**entry, "version_configs": versions})
    return entry, versions, InferenceBackend(**{**created.model_dump(), "version_configs": versions})


def validate(path: str) -> dict:
    from gpustack.routes.inference_backend import validate_custom_suffix
    from gpustack.schemas.inference_backend_source import normalize_backend_yaml

    entry, versions, backend = backend_of(path)
    validate_custom_suffix(entry["backend_name"], None)
    validate_custom_suffix(None, versions)
    normalize_backend_yaml(yaml.safe_dump([entry]), strict=True)
    return {"backend_name": backend.backend_name, "versions": sorted(versions.root),
            "health_check_path": backend.health_check_path}


def instance(port: int):
    from gpustack.schemas.models import ModelInstance

    return ModelInstance(id=11, name="instance", model_id=7, model_name="model", worker_id=1,
                         worker_ip="127.0.0.1", port=port, ports=[port], gpu_indexes=[], owner_principal_id=1)


def render(path: str, version: str, model_path: str, port: int, model_name: str, parameters: list[str],
           env: dict[str, str]) -> dict:
    from gpustack.schemas.models import Model
    from gpustack.worker.backends.custom import CustomServer

    _, _, backend = backend_of(path)
    model = Model(id=7, name=model_name, source="local_path", local_path=model_path, categories=["reranker"],
                  backend=backend.backend_name, backend_version=version, backend_parameters=parameters, env=env)
    server = CustomServer.__new__(CustomServer)  # its __init__ talks to a GPUStack server; the fields it reads:
    server._model = server._model_spec = model
    server._model_instance = instance(port)
    server._worker = SimpleNamespace(id=1, ip="127.0.0.1", status=SimpleNamespace(gpu_devices=[]))
    server._config = None
    server._clientset = None
    server._model_path = model_path
    server.inference_backend = backend
    entrypoint = backend.get_container_entrypoint(version)
    args, _ = server._build_command_args(entrypoint=entrypoint)
    return {"entrypoint": entrypoint, "args": args, "image": backend.get_image_name(version)}


def ready(port: int, path: str) -> dict:
    from gpustack.schemas.models import Model
    from gpustack.worker.serve_manager import is_ready

    model = Model(id=7, name="model", source="local_path", local_path="/m", backend="rerank-server-custom")
    return {"ready": bool(is_ready("rerank-server-custom", instance(port), path, model))}


def mutate(body: dict, env: dict[str, str]) -> dict:
    from gpustack.routes import openai
    from gpustack.schemas.models import Model

    request = SimpleNamespace(url=SimpleNamespace(path="/v1/rerank"),
                              state=SimpleNamespace(model=Model(name=body["model"], source="local_path", env=env),
                                                    overridden_model_name=None))
    openai.mutate_request(request, body["model"], body, None)
    return body


def usage(body: dict) -> dict:
    """The usage middleware's own processing of a 200 /v1/rerank answer; only its sink (the
    accumulator that batches metrics for the database) is replaced, to read what it was given."""
    from gpustack.api import middlewares
    from gpustack.routes.rerank import RerankResponse
    from starlette.responses import Response

    recorded: list = []

    async def sink(metrics) -> None:
        recorded.extend({"input": m.input_token, "output": m.output_token, "total": m.total_token,
                         "operation": str(m.operation.value), "model": m.model} for m in metrics)

    async def run() -> int:
        response = Response(content=json.dumps(body), media_type="application/json")

        async def chunks():
            yield response.body

        response.body_iterator = chunks()
        state = SimpleNamespace(stream=False, user=None, model=SimpleNamespace(name="model", id=7, cluster_id=1),
                                start_time=datetime.datetime.now(datetime.timezone.utc), model_route_id=None,
                                api_key=None)
        middlewares.accumulate_gateway_metrics = sink
        answered = await middlewares.process_request(SimpleNamespace(state=state, headers={}), response,
                                                     RerankResponse, middlewares.OperationEnum.RERANK)
        return answered.status_code

    return {"status": asyncio.run(run()), "recorded": recorded}


OPERATIONS = {"validate": validate, "render": render, "ready": ready, "mutate": mutate, "usage": usage}

if __name__ == "__main__":
    try:
        print(json.dumps(OPERATIONS[sys.argv[1]](**json.loads(sys.argv[2]))))
    except Exception as exc:  # GPUStack's HTTP exceptions keep their text in `message`
        sys.exit(f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
