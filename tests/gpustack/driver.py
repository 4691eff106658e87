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
  proxy     {"port", "model", "env", "requests"}: each request ({"path", "body"}, optionally "key")
            sent with a GPUStack API key to GPUStack's own server app, which forwards it through its
            worker's own inference proxy to the server on `port`; the answers and what GPUStack's
            usage recorder buffered for each. Only the database's rows are stood in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import json
import logging
import sys
import tempfile
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


def stand_in(owner, name: str, replacement) -> None:
    """Replace one of GPUStack's database lookups, refusing if the real one's parameters have changed
    (a stand-in that drifted from GPUStack would test a GPUStack that does not exist)."""
    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    real = getattr(owner, name)
    if parameters(real) != parameters(replacement):
        raise TypeError(f"{owner.__name__}.{name} is now {inspect.signature(real)}; the stand-in is "
                        f"{inspect.signature(replacement)}")
    setattr(owner, name, replacement)


def deployment(model_name: str, env: dict[str, str], port: int):
    """The rows GPUStack's database would hold for one reranker deployed on one worker, made with
    GPUStack's own classes, and an API key made as its /v2/api-keys route makes one."""
    from gpustack import security
    from gpustack.schemas.api_keys import ApiKey
    from gpustack.schemas.model_routes import ModelRoute
    from gpustack.schemas.models import Model, ModelInstanceStateEnum
    from gpustack.schemas.users import User
    from gpustack.schemas.workers import Worker

    access, secret = security.generate_access_key(), security.generate_secret_key()
    user = User(id=3, name="alice", is_active=True)
    key = ApiKey(id=5, name="seeds", user_id=user.id, access_key=access,
                 hashed_secret_key=security.get_secret_hash(secret),
                 secret_key_digest=security.new_secret_key_digest(secret_key=secret, is_custom=False,
                                                                  access_key=access))
    model = Model(id=7, name=model_name, source="local_path", local_path="/m", categories=["reranker"],
                  backend="rerank-server-custom", env=env, cluster_id=1)
    running = instance(port)
    running.model_name, running.state = model_name, ModelInstanceStateEnum.RUNNING
    worker = Worker(id=1, name="worker", hostname="worker", ip="127.0.0.1", ifname="lo", port=0,
                    worker_uuid="00000000-0000-0000-0000-000000000001", token=security.generate_secret_key(),
                    cluster_id=1)
    return SimpleNamespace(user=user, key=key, token=f"{security.API_KEY_PREFIX}_{access}_{secret}",
                           model=model, route=ModelRoute(id=9, name=model_name), instance=running,
                           worker=worker, connections=[])


def stand_in_the_database(rows) -> None:
    """GPUStack's session stays its own (gpustack.server.db.async_session) but on an empty in-memory
    database, so a lookup not stood in here fails instead of passing unnoticed; the lookups the API-key
    check and proxy_request_by_model make answer from `rows`."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    from gpustack.server import db
    from gpustack.server.services import (APIKeyService, ModelInstanceService, ModelRouteService, ModelService,
                                          RouteTargetResolution, UserService, WorkerService)

    db.engine = create_async_engine("sqlite+aiosqlite://")
    event.listen(db.engine.sync_engine, "connect", lambda *_: rows.connections.append(1))

    async def get_by_access_key(self, access_key):
        return rows.key if access_key == rows.key.access_key else None

    async def get_user(self, user_id):
        return rows.user if user_id == rows.user.id else None

    async def get_user_accessible_model_names(self, user_id):
        return {rows.route.name} if user_id == rows.user.id else set()

    async def resolve_route_targets(self, name):
        return [RouteTargetResolution(model_id=rows.model.id, overridden_model_name=None, weight=100)] \
            if name == rows.route.name else []

    async def get_route(self, name):
        return rows.route if name == rows.route.name else None

    async def get_model(self, model_id):
        return rows.model if model_id == rows.model.id else None

    async def get_running_instances(self, model_id):
        return [rows.instance] if model_id == rows.model.id else []

    async def get_worker(self, worker_id):
        return rows.worker if worker_id == rows.worker.id else None

    stand_in(APIKeyService, "get_by_access_key", get_by_access_key)
    stand_in(UserService, "get_by_id", get_user)
    stand_in(UserService, "get_user_accessible_model_names", get_user_accessible_model_names)
    stand_in(ModelRouteService, "resolve_route_targets", resolve_route_targets)
    stand_in(ModelRouteService, "get_by_name", get_route)
    stand_in(ModelService, "get_by_id", get_model)
    stand_in(ModelInstanceService, "get_running_instances", get_running_instances)
    stand_in(WorkerService, "get_by_id", get_worker)


def worker_app(rows, data_dir: str):
    """The worker's inference proxy as GPUStack's Worker._serve_apis assembles it: its routing
    middleware (set_port_from_model_name), its proxy route and error handlers; the instance's port comes
    from GPUStack's own ServeManager lookup, over the instance it would have cached."""
    import aiohttp
    from fastapi import FastAPI
    from starlette.middleware.base import BaseHTTPMiddleware

    from gpustack.api import exceptions
    from gpustack.config.config import Config
    from gpustack.routes.worker import proxy
    from gpustack.worker.serve_manager import ServeManager

    @contextlib.asynccontextmanager
    async def clients(app):
        app.state.http_client = aiohttp.ClientSession(trust_env=True)
        app.state.http_client_no_proxy = aiohttp.ClientSession()
        yield
        await app.state.http_client.close()
        await app.state.http_client_no_proxy.close()

    serve_manager = ServeManager.__new__(ServeManager)  # its __init__ starts a worker; the fields it reads:
    serve_manager._worker_id_getter = lambda: rows.worker.id
    serve_manager._model_instance_by_instance_id = {rows.instance.id: rows.instance}
    app = FastAPI(lifespan=clients)
    app.state.config = Config(data_dir=data_dir)
    app.state.token = rows.worker.token
    app.state.worker_ip_getter = proxy.localhost_fallback
    app.state.get_instance_port_by_model_instance_id = serve_manager.get_instance_port_by_model_instance_id
    app.add_middleware(BaseHTTPMiddleware, dispatch=proxy.set_port_from_model_name)
    app.include_router(proxy.router)
    exceptions.register_handlers(app)
    return app


async def serving(app):
    """`app` under uvicorn on a free loopback port, as GPUStack serves its apps: (server, task, port)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    return server, task, server.servers[0].sockets[0].getsockname()[1]


def proxy(port: int, model: str, env: dict[str, str], requests: list[dict]) -> dict:
    """GPUStack's server app itself (create_app: its middlewares, its /v1 routes, the API-key check,
    proxy_request_by_model, mutate_request, request_to_worker) and its worker's inference proxy
    between a client and the server on `port`; its usage middleware feeds GPUStack's own buffer
    (accumulate_gateway_metrics), read after each answer."""
    import httpx

    from gpustack.config.config import Config
    from gpustack.logging import setup_logging
    from gpustack.server import metrics_collector
    from gpustack.server.app import create_app

    setup_logging()  # as GPUStack's server starts (its loggers' .trace comes from here); its warnings are kept
    logging.disable(logging.INFO)
    logged: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: logged.append(f"{record.name}: {record.getMessage()}")
    logging.getLogger().handlers = [handler]
    rows = deployment(model, env, port)
    stand_in_the_database(rows)

    async def run() -> dict:
        with tempfile.TemporaryDirectory() as data:
            gpustack_server, server_task, server_port = await serving(
                create_app(Config(data_dir=f"{data}/server", gateway_mode="disabled")))
            gpustack_worker, worker_task, rows.worker.port = await serving(worker_app(rows, f"{data}/worker"))
            answers = []
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server_port}", timeout=120) as client:
                    for request in requests:
                        before, logged[:] = len(metrics_collector.gateway_details_buffer), []
                        answer = await client.post(request["path"], json=request["body"], headers={
                            "Authorization": f"Bearer {request.get('key', rows.token)}"})
                        answers.append({
                            "status": answer.status_code, "content_type": answer.headers.get("content-type"),
                            "body": answer.text,
                            "recorded": [{"input": m.input_token, "output": m.output_token, "total": m.total_token,
                                          "operation": str(m.operation.value), "model": m.model,
                                          "user_id": m.user_id, "api_key": m.access_key == rows.key.access_key}
                                         for m in metrics_collector.gateway_details_buffer[before:]],
                            "logged": list(logged)})
            finally:
                gpustack_server.should_exit = gpustack_worker.should_exit = True
                await asyncio.gather(server_task, worker_task)
            return {"answers": answers, "database_connections": len(rows.connections)}

    return asyncio.run(run())


OPERATIONS = {"validate": validate, "render": render, "ready": ready, "mutate": mutate, "usage": usage,
              "proxy": proxy}

if __name__ == "__main__":
    try:
        print(json.dumps(OPERATIONS[sys.argv[1]](**json.loads(sys.argv[2]))))
    except Exception as exc:  # GPUStack's HTTP exceptions keep their text in `message`
        sys.exit(f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
