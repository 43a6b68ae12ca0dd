"""The cluster form of the deployment: compose overlay, k8s overlay, cluster definitions."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from common.bus.topology import QUORUM_GROUP_SIZE
from common.config import Settings
from tests.deploy._tools import DEPLOY, require_tool

try:
    from eventguard.definitions import rabbitmq_definitions
    from workers.registry import WORKERS
except ImportError as error:  # the workers are written alongside; say so instead of erroring
    pytest.skip(f"the worker registry does not import yet: {error}", allow_module_level=True)

OVERLAY_TEXT = (DEPLOY / "compose.cluster.yaml").read_text()
OVERLAY: dict[str, Any] = yaml.safe_load(OVERLAY_TEXT)
_REQUIRED = re.compile(r"\$\{([A-Z0-9_]+)(:\?[^}]*)?\}")
_NODES = {"rabbitmq", "rabbitmq-2", "rabbitmq-3"}


def _example() -> set[str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def test_cluster_definitions_are_the_generator_with_three_replicas() -> None:
    """definitions.cluster.json is `eventguard topology definitions` with a group size of 3,
    and every quorum queue in it carries x-quorum-initial-group-size 3."""
    cluster = json.loads((DEPLOY / "rabbitmq" / "definitions.cluster.json").read_text())
    expected = rabbitmq_definitions(Settings(quorum_initial_group_size=3))
    assert cluster == json.loads(json.dumps(expected))
    for queue in cluster["queues"]:
        assert queue["arguments"][QUORUM_GROUP_SIZE] == 3, queue["name"]


def test_the_compose_overlay_needs_only_variables_of_the_env_example() -> None:
    """Every ${VAR} the overlay uses is listed (empty) in .env.example."""
    assert {m.group(1) for m in _REQUIRED.finditer(OVERLAY_TEXT)} <= _example()


def test_every_worker_gets_all_three_nodes_as_its_own_user_and_the_sentinels() -> None:
    """Each worker's EVENTGUARD_BROKER_URLS names the three nodes with the worker's user; the
    Sentinels, WAIT and three quorum replicas come with it."""
    for worker in WORKERS:
        env = OVERLAY["services"][worker]["environment"]
        urls = [urlsplit(u) for u in env["EVENTGUARD_BROKER_URLS"].split(",")]
        assert {u.hostname for u in urls} == _NODES, worker
        assert {u.username for u in urls} == {worker}
        sentinels = env["EVENTGUARD_REDIS_SENTINELS"].split(",")
        assert {s.split(":")[0] for s in sentinels} == {"sentinel-1", "sentinel-2", "sentinel-3"}
        assert env["EVENTGUARD_REDIS_WAIT_REPLICAS"] == "1"
        assert env["EVENTGUARD_QUORUM_INITIAL_GROUP_SIZE"] == "3"
    init = OVERLAY["services"]["rabbitmq-init"]["volumes"]
    assert "./rabbitmq/definitions.cluster.json:/definitions.json:ro" in init


def test_the_k8s_cluster_overlay_runs_three_rabbitmq_nodes_and_redis_with_sentinels() -> None:
    """The overlay renders a three-replica RabbitmqCluster, a three-pod Redis StatefulSet with a
    Sentinel in each pod, and the node list from a secret for every worker."""
    kubectl = require_tool("kubectl")
    rendered = subprocess.run(  # noqa: S603 - a fixed tool on the repository's own files
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / "cluster")],
        capture_output=True,
        check=True,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    kinds = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert kinds[("RabbitmqCluster", "eventguard-rabbitmq")]["spec"]["replicas"] == 3
    redis = kinds[("StatefulSet", "redis")]["spec"]
    assert redis["replicas"] == 3
    containers = {c["name"] for c in redis["template"]["spec"]["containers"]}
    assert containers == {"redis", "sentinel"}
    for worker in WORKERS:
        name = worker.replace("_", "-")
        container = kinds[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        ref = env["EVENTGUARD_BROKER_URLS"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == f"broker-urls-{name}"
        assert "EVENTGUARD_REDIS_SENTINELS" in env
