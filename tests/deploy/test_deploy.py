"""The deploy files agree with the code: RabbitMQ definitions, metric names, promtool lint."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from common.metrics import Metrics
from common.reliability import Guards
from workers.definitions import rabbitmq_definitions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_METRIC = re.compile(r"\beventguard_[a-z0-9_]+")


def test_rabbitmq_definitions_match_the_declared_topology() -> None:
    """deploy/rabbitmq/definitions.json is exactly what `eventguard topology apply` declares."""
    committed = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    assert committed == json.loads(json.dumps(rabbitmq_definitions()))


def test_every_worker_has_least_privilege_permissions() -> None:
    """Each worker may touch only its own queues and the shared exchanges; producers publish."""
    definitions = rabbitmq_definitions()
    permissions = {p["user"]: p for p in definitions["permissions"]}
    quarantine = permissions["quarantine"]
    assert re.match(quarantine["read"], "eventguard.quarantine")
    assert re.match(quarantine["read"], "eventguard.dead")
    assert not re.match(quarantine["read"], "eventguard.ai_fallback")
    assert permissions["marketplace"]["configure"] == "^$"
    assert re.match(permissions["marketplace"]["write"], "eventguard.events")
    assert not re.match(permissions["marketplace"]["write"], "eventguard.dlx")
    assert all(user["password_hash"] == "" for user in definitions["users"])


def _exported_names() -> set[str]:
    metrics = Metrics(CollectorRegistry())
    Guards(metrics=metrics).guard("redis")
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gauge": ("",),
    }
    names: set[str] = set()
    for family in metrics.registry.collect():
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_rules_and_dashboard_use_metrics_that_exist() -> None:
    """Every eventguard_* series the alert rules and the dashboard query is exported."""
    exported = _exported_names()
    used: set[str] = set()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "eventguard.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            used |= set(_METRIC.findall(str(rule["expr"])))
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "eventguard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(_METRIC.findall(target["expr"]))
    missing = sorted(name for name in used if name not in exported)
    assert missing == []


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make deploy-check installs it)"
)
def test_promtool_accepts_a_live_workers_metrics() -> None:
    """`promtool check metrics` finds nothing to complain about in a worker's /metrics."""
    assert PROMTOOL is not None
    metrics = Metrics(CollectorRegistry())
    Guards(metrics=metrics).guard("redis")
    metrics.runtime.messages.labels("w", "health.heartbeat", "ack").inc()
    text = generate_latest(metrics.registry)
    result = subprocess.run(  # noqa: S603 - a fixed tool on fixed input
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
