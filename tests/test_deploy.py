"""deploy/: the Serve config against Ray's own schema and the builder, every Kubernetes manifest
against the Kubernetes schemas (kubernetes-validate, offline), and the two kept consistent; the
Dockerfiles against hadolint. (deploy/gpustack/ is GPUStack's to judge: tests/test_gpustack.py.)"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import msgspec
import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from server.config import ConfigError
from server.ray.app import MULTIPLEXED_DEPLOYMENT, RayAppConfig, build, served_models
from tests.conftest import ROOT

SERVE_CONFIG = ROOT / "deploy" / "ray" / "serve.yaml"
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(SERVE_CONFIG.read_text())


def test_serve_config_is_valid_for_ray_and_the_builder() -> None:
    schema = ServeDeploySchema.model_validate(serve_config())
    (application,) = schema.applications
    assert application.import_path == "server.ray.app:build"
    args = msgspec.convert(application.args, RayAppConfig, strict=False)
    # Every deployment the config tunes is one the builder creates.
    created = set(served_models(args.server)) if args.models_per_replica is None else {MULTIPLEXED_DEPLOYMENT}
    tuned = {d.name for d in application.deployments}
    assert tuned <= created | {"gateway"}, tuned - created
    for deployment in application.deployments:
        if deployment.name != "gateway":
            # A replica reserves the CPUs its engine's threads use.
            assert deployment.ray_actor_options.num_cpus == args.server.threads


def test_builder_refuses_unknown_args() -> None:
    with pytest.raises(ConfigError, match="replica"):
        build({"server": {"models": ["x.gguf"]}, "replica": 2})


@pytest.mark.parametrize("path", sorted(KUBERNETES.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_validate(path: Path) -> None:
    for document in documents(path):
        for resource in builtin_resources(document):
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def builtin_resources(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document itself when Kubernetes defines its kind; for a custom resource (KubeRay's
    RayService, Prometheus Operator's ServiceMonitor, whose schemas are not Kubernetes'), the pod
    templates it holds, as PodTemplates, and its own checks below."""
    kind = document["kind"]
    if kind == "RayService":
        cluster = document["spec"]["rayClusterConfig"]
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        return [{"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"rerank-{i}"},
                 "template": group["template"]} for i, group in enumerate(groups)]
    if kind == "ServiceMonitor":
        return []
    return [document]


def test_rayservice_runs_the_serve_config() -> None:
    (rayservice,) = documents(KUBERNETES / "rayservice.yaml")
    assert rayservice["apiVersion"] == "ray.io/v1"
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == serve_config()
    assert rayservice["spec"]["rayClusterConfig"]["rayVersion"] == importlib.metadata.version("ray")


def test_plain_manifests_fit_together() -> None:
    resources = {(d["kind"], d["metadata"]["name"]): d for d in documents(KUBERNETES / "rerank.yaml")}
    deployment = resources["Deployment", "rerank"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    probes = ("startupProbe", "readinessProbe", "livenessProbe")
    assert {container[probe]["httpGet"]["path"] for probe in probes} == {"/health"}
    # The Service and the ServiceMonitor find the pods, on a port the container has.
    labels = pod["metadata"]["labels"]
    service = resources["Service", "rerank"]
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    (monitor,) = documents(KUBERNETES / "servicemonitor.yaml")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
    # The autoscaler scales this Deployment; the model cache is the claim the file declares.
    hpa = resources["HorizontalPodAutoscaler", "rerank"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    claim = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in resources
    # The image's model cache (HF_HOME=/cache in the Dockerfile) is the mounted volume.
    assert container["volumeMounts"][0]["mountPath"] == "/cache"
    assert "HF_HOME=/cache" in (ROOT / "Dockerfile").read_text()


def test_the_dockerfiles_pass_hadolint(tmp_path):
    """hadolint's rules, with the exceptions each Dockerfile names on the line (unpinned Debian and
    Ubuntu packages, for the reason given there); the check fails on a Dockerfile that breaks one."""
    hadolint = str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, "--no-color", "Dockerfile", "Dockerfile.cuda"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\nCMD python -m server\n")
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3025" in done.stdout
