"""The service as a Ray Serve application, and `python -m server.ray.app` (`make run-ray`).

The HTTP surface is the same Starlette application as in one process (server/app.py), hosted by
Ray Serve's ingress in the `gateway` deployment (server/ray/gateway.py); scoring runs in model
deployments (server/ray/replica.py). `build` is the application builder a Serve config names
(deploy/ray/serve.yaml): `serve run` / `serve deploy` and KubeRay's RayService call it with the
config's `args`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import ray
from ray import serve
from ray.serve import Application

from ..config import ConfigError, ServerConfig, parse_args
from ..provision.catalog import CatalogError, load_catalog
from ..provision.model_spec import ModelSpecError, parse_model_spec
from .gateway import Gateway
from .replica import ModelReplica

log = logging.getLogger("server.ray")

Positive = Annotated[int, msgspec.Meta(gt=0)]

# The gateway only parses JSON and routes; it must never be what limits concurrency.
GATEWAY_MAX_ONGOING_REQUESTS = 1000
MULTIPLEXED_DEPLOYMENT = "models"


class RayAppConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The Serve config's `args`."""

    server: ServerConfig = ServerConfig()
    """The settings `python -m server` takes as flags, by their field names (models, aliases,
    threads, ctx_size, batch_tokens, gpu_layers, api_keys, limits...). host and port are Ray's
    (http_options)."""
    replicas: Positive = 1
    """Replicas of each model deployment; the Serve config's `deployments` section overrides it
    (num_replicas, or autoscaling_config)."""
    models_per_replica: Positive | None = None
    """None: one deployment per model, named as the model is served. A number: one deployment,
    `models`, whose replicas load the models requests ask for, at most this many each, evicting
    the least recently used."""
    max_ongoing_requests: Positive = 64
    """Requests a model replica takes at once; its scheduler batches them together."""


def served_models(config: ServerConfig) -> dict[str, str]:
    """Each model's served name and its `--model` text, the name known without downloading
    anything (deployments are named by it)."""
    catalog = load_catalog(config.catalog)
    specs = config.models or [catalog.default]
    names = [config.aliases[i] if i < len(config.aliases) else parse_model_spec(spec, catalog).served_name
             for i, spec in enumerate(specs)]
    if len(set(names)) != len(names):
        raise ConfigError(f"two served models share a name: {names}; give each an alias")
    return dict(zip(names, specs, strict=True))


def build_app(app_config: RayAppConfig) -> Application:
    """A replica reserves its threads as Ray CPUs, so unset threads mean one per replica, never
    all of a node's cores in each replica."""
    config = app_config.server
    if config.threads is None:
        config = msgspec.structs.replace(config, threads=1)
    threads = config.threads
    model_options: dict[str, Any] = {
        "num_replicas": app_config.replicas,
        "max_ongoing_requests": app_config.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": threads, "num_gpus": 1 if config.gpu_layers else 0},
    }
    replica = serve.deployment(ModelReplica)
    models = served_models(config)
    if app_config.models_per_replica is None:
        handles = {
            name: replica.options(name=name, **model_options).bind(
                msgspec.structs.replace(config, models=[spec], aliases=[name]))
            for name, spec in models.items()
        }
    else:
        pool = replica.options(name=MULTIPLEXED_DEPLOYMENT, **model_options).bind(
            msgspec.structs.replace(config, models=list(models.values()), aliases=list(models)),
            app_config.models_per_replica)
        handles = dict.fromkeys(models, pool)
    gateway = serve.deployment(serve.ingress()(Gateway)).options(
        name="gateway", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=GATEWAY_MAX_ONGOING_REQUESTS)
    return gateway.bind(handles, config, app_config.models_per_replica is not None)


def build(args: dict[str, Any]) -> Application:
    """The builder `import_path: server.ray.app:build` names in a Serve config. The server's
    settings start from the RERANK_* environment variables, as `python -m server`'s do (API keys
    from a Kubernetes Secret, say); the config's `server` mapping overrides them."""
    server = {**msgspec.to_builtins(parse_args([])), **args.get("server", {})}
    try:
        return build_app(msgspec.convert({**args, "server": server}, RayAppConfig, strict=False))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid Serve config args: {exc}") from None


# -- python -m server.ray.app ------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server.ray.app", allow_abbrev=False,
        description="Serve the models through Ray Serve on a local Ray head (or an existing cluster).",
        epilog="Every other flag is python -m server's (--model, --alias, --threads, --api-key, ...).")
    parser.add_argument("--replicas", type=_positive, default=2, help="replicas of each model deployment")
    parser.add_argument("--models-per-replica", type=_positive, default=None,
                        help="one multiplexed deployment holding at most this many models per replica")
    parser.add_argument("--ray-address", default="local",
                        help="'local' starts a Ray head in this process and stops it at exit; "
                             "or the address of a running cluster")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    own, rest = _parser().parse_known_args(argv)
    try:
        config = parse_args(rest)
        app_config = msgspec.convert({"server": msgspec.to_builtins(config), "replicas": own.replicas,
                                      "models_per_replica": own.models_per_replica}, RayAppConfig)
        if config.threads is None:
            # The machine's cores shared among the replicas, each reserving its threads from Ray.
            config = msgspec.structs.replace(config, threads=max(1, (os.cpu_count() or 1) // own.replicas))
            app_config = msgspec.structs.replace(app_config, server=config)
        app = build_app(app_config)
    except (ConfigError, CatalogError, ModelSpecError, msgspec.ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ray.init(address=own.ray_address, include_dashboard=False)
    # After ray.init, whose own handlers would abort the process on SIGTERM.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(app, name="rerank", route_prefix="/")
        log.info("serving on http://%s:%d through Ray Serve; Ctrl-C stops", config.host, config.port)
        stop.wait()
        return 0
    except RuntimeError as exc:  # the deployments failed to start; Serve says why
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if own.ray_address == "local":
            serve.shutdown()
        else:
            serve.delete("rerank")  # a cluster this process did not start keeps running
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
