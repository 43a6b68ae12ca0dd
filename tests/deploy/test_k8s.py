"""The Kubernetes manifests, rendered with kustomize, against the code and the CRD schemas."""

from __future__ import annotations

import importlib
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from common.bus.topology import work_queue_name
from common.config.sections import RuntimeSettings
from tests.deploy._tools import DEPLOY, require_module, require_tool

try:
    from workers.registry import WORKERS
except ImportError as error:  # the workers are written alongside; say so instead of erroring
    pytest.skip(f"the worker registry does not import yet: {error}", allow_module_level=True)

OVERLAYS = ["base", "overlays/production", "overlays/cluster"]
_SECRET_VARIABLES = {
    "EVENTGUARD_BROKER_URL",
    "EVENTGUARD_REDIS_URL",
    "EVENTGUARD_SECURITY__JWT_SIGNING_KEY",
    "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS",
    "EVENTGUARD_HEALTH_MONITOR__RABBITMQ_API_PASSWORD",
}


@cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = require_tool("kubectl")
    result = subprocess.run(  # noqa: S603 - a fixed tool on the repository's own files
        [kubectl, "kustomize", str(DEPLOY / "k8s" / overlay)],
        capture_output=True,
        check=True,
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _render(overlay) if o["kind"] == kind}


def _name(worker: str) -> str:
    return worker.replace("_", "-")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_worker_has_a_deployment_that_runs_it_as_its_own_user(overlay: str) -> None:
    """One Deployment per worker runs `eventguard run WORKER` as the worker's RabbitMQ user."""
    deployments = _objects(overlay, "Deployment")
    assert set(deployments) == {_name(w) for w in WORKERS} | {"console"}
    for worker in WORKERS:
        container = deployments[_name(worker)]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["run", worker]
        env = {e["name"]: e for e in container["env"]}
        assert env["EVENTGUARD_BROKER_USER"]["value"] == worker
        ref = env["EVENTGUARD_BROKER_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == f"broker-url-{_name(worker)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_grace_period_and_hardening(overlay: str) -> None:
    """Probes hit /healthz and /readyz; the grace period outlasts the drain deadline; the
    container runs as non-root with a read-only root filesystem and resource requests."""
    drain = float(
        _objects(overlay, "ConfigMap")["eventguard-config"]["data"][
            "EVENTGUARD_RUNTIME__DRAIN_TIMEOUT_S"
        ]
    )
    assert drain >= RuntimeSettings().drain_timeout_s
    for name, deployment in _objects(overlay, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["terminationGracePeriodSeconds"] > drain + 10, name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_only_referenced(overlay: str) -> None:
    """No Secret object is rendered and every secret variable comes from a secretKeyRef."""
    assert not [o for o in _render(overlay) if o["kind"] == "Secret"]
    for deployment in _objects(overlay, "Deployment").values():
        for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if env["name"] in _SECRET_VARIABLES:
                assert "value" not in env, env["name"]
                assert env["valueFrom"]["secretKeyRef"]["name"] == "eventguard-secrets"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_worker_scales_on_its_own_queue_and_has_a_budget(overlay: str) -> None:
    """A KEDA ScaledObject per worker that is safe to scale watches that worker's work queue
    (health_monitor has none: one leader evaluates, standbys add no throughput); a PDB guards
    each; every pod is named by the downward API."""
    scaled = _objects(overlay, "ScaledObject")
    budgets = _objects(overlay, "PodDisruptionBudget")
    services = _objects(overlay, "Service")
    deployments = _objects(overlay, "Deployment")
    assert _name("health_monitor") not in scaled
    for worker in WORKERS:
        env = deployments[_name(worker)]["spec"]["template"]["spec"]["containers"][0]["env"]
        instance = next(e for e in env if e["name"] == "EVENTGUARD_INSTANCE")
        assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        if worker != "health_monitor":
            spec = scaled[_name(worker)]["spec"]
            assert spec["scaleTargetRef"]["name"] == _name(worker)
            assert spec["triggers"][0]["metadata"]["queueName"] == work_queue_name(worker)
        selector = budgets[_name(worker)]["spec"]["selector"]["matchLabels"]
        assert selector == {"app.kubernetes.io/name": _name(worker)}
        labels = services[_name(worker)]["metadata"]["labels"]
        assert labels["eventguard.io/worker"] == worker  # the `worker` label on its series


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_console_runs_as_its_own_user_outside_the_workers_policies(overlay: str) -> None:
    """`eventguard console` as RabbitMQ user `console`, its own Service, PDB and policy, and no
    ScaledObject (it has no work queue) or ServiceMonitor label (it has no metrics)."""
    pod = _objects(overlay, "Deployment")["console"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["console"]
    env = {e["name"]: e for e in container["env"]}
    assert env["EVENTGUARD_BROKER_USER"]["value"] == "console"
    assert env["EVENTGUARD_BROKER_URL"]["valueFrom"]["secretKeyRef"]["key"] == "broker-url-console"
    assert env["EVENTGUARD_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert str(port) == env["EVENTGUARD_CONSOLE__PORT"]["value"]
    assert "console" not in _objects(overlay, "ScaledObject")
    assert "console" in _objects(overlay, "PodDisruptionBudget")
    policy = _objects(overlay, "NetworkPolicy")["console"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "console"}
    assert policy["ingress"][0]["ports"] == [{"port": port, "protocol": "TCP"}]
    service = _objects(overlay, "Service")["console"]["metadata"]["labels"]
    assert service["app.kubernetes.io/part-of"] != "eventguard"


def test_production_overlay_runs_two_replicas_of_the_published_image() -> None:
    """The production overlay pins a registry image and keeps at least two replicas."""
    for deployment in _objects("overlays/production", "Deployment").values():
        assert deployment["spec"]["replicas"] >= 2
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert ":" in image
        assert not image.endswith(":latest")
    for scaled in _objects("overlays/production", "ScaledObject").values():
        assert scaled["spec"]["minReplicaCount"] >= 2


def test_ai_fallback_models_match_the_compose_copy() -> None:
    """The model chain mounted in Kubernetes is the one compose mounts."""
    k8s = (DEPLOY / "k8s" / "base" / "ai-fallback-models.yaml").read_text()
    assert k8s == (DEPLOY / "ai_fallback" / "models.yaml").read_text()


_CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): ("cloudcoil.models.keda.v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1",
        "TriggerAuthentication",
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1",
        "ServiceMonitor",
    ),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_crd_schemas(overlay: str) -> None:
    """KEDA and Prometheus-operator objects validate against models generated from their CRDs,
    and no field is unknown (a field the model drops would be a typo the cluster ignores)."""
    require_module("cloudcoil.models.keda")
    require_module("cloudcoil.models.prometheus_operator")
    custom = [o for o in _render(overlay) if (o["apiVersion"], o["kind"]) in _CUSTOM]
    assert {o["kind"] for o in custom} == {
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceMonitor",
    }
    for document in custom:
        module, name = _CUSTOM[(document["apiVersion"], document["kind"])]
        model = getattr(importlib.import_module(module), name)
        parsed = model.model_validate(document)
        assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == document


def test_every_object_in_base_is_validated_by_some_schema() -> None:
    """Anything not a built-in Kubernetes kind is one of the custom resources checked above."""
    builtin = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1"}
    for document in _render("base"):
        known = document["apiVersion"] in builtin or (
            (document["apiVersion"], document["kind"]) in _CUSTOM
        )
        assert known, (document["apiVersion"], document["kind"])
