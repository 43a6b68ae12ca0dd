"""Prometheus config, rules and the Grafana dashboard: promtool, and against a live worker."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy._fleet import serving_fleet
from tests.deploy._tools import DEPLOY, require_tool

PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules" / "eventguard.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "eventguard.json"
_SERIES = re.compile(r"\b(?:eventguard|rabbitmq)_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _promtool(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    promtool = require_tool("promtool")
    result = subprocess.run(  # noqa: S603 - a fixed tool on the repository's own files
        [promtool, *args], cwd=cwd, input=stdin, capture_output=True, check=False
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    return output


def test_promtool_checks_the_scrape_config() -> None:
    """`promtool check config` accepts deploy/prometheus/prometheus.yml."""
    _promtool("check", "config", "--syntax-only", str(PROMETHEUS / "prometheus.yml"))


def test_promtool_checks_the_rules() -> None:
    """`promtool check rules` accepts every recording and alert rule."""
    _promtool("check", "rules", str(RULES))


def test_promtool_rule_unit_tests_pass() -> None:
    """`promtool test rules` passes deploy/prometheus/tests."""
    tests = sorted(p.name for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    _promtool("test", "rules", *tests, cwd=PROMETHEUS / "tests")


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_alert_has_a_runbook_a_severity_and_a_unit_test() -> None:
    """Each alert names its runbook section in deploy/README.md and is exercised by promtool."""
    readme = (DEPLOY / "README.md").read_text()
    tested = "\n".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.yml"))
    for rule in (r for r in _rules() if "alert" in r):
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert f"### {anchor}\n" in readme, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert f"alertname: {rule['alert']}\n" in tested, rule["alert"]


async def test_promtool_accepts_a_live_workers_metrics() -> None:
    """`promtool check metrics` finds nothing wrong with the whole fleet's /metrics."""
    require_tool("promtool")
    async with (
        serving_fleet() as (_fleet, port),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.read()
    assert b"eventguard_messages_consumed_total" in text
    _promtool("check", "metrics", stdin=text)


async def _exported() -> set[str]:
    async with (
        serving_fleet() as (_fleet, port),
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
    return names


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


async def test_rules_and_dashboard_query_only_exported_series() -> None:
    """Every eventguard_* series the rules and the dashboard query is on a worker's /metrics."""
    exported = await _exported()
    queried = {name for rule in _rules() for name in _SERIES.findall(str(rule["expr"]))}
    queried |= {name for expr in _dashboard_exprs() for name in _SERIES.findall(expr)}
    ours = {name for name in queried if name.startswith("eventguard_")}
    assert sorted(ours - exported) == []
    # RabbitMQ's own series come from its Prometheus plugin (scraped as job "rabbitmq").
    assert queried - ours <= {"rabbitmq_queue_consumers", "rabbitmq_queue_messages_ready"}


def test_dashboard_is_provisioned_against_the_provisioned_datasource() -> None:
    """The dashboard's panels use the datasource uid that Grafana provisioning creates."""
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = datasources["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]


def test_dashboard_shows_what_the_operators_watch() -> None:
    """Throughput, outcomes, latency, in-flight, retries, dead letters, breakers, quarantine,
    alerts, AI fallbacks and cost, and scan durations each have a panel."""
    exprs = "\n".join(_dashboard_exprs())
    for series in (
        "eventguard_messages_consumed_total",
        "eventguard_message_processing_seconds_bucket",
        "eventguard_messages_in_flight",
        "eventguard_retries_total",
        "eventguard_dead_letters_total",
        "eventguard_breaker_state",
        "eventguard_quarantine_entries",
        "eventguard_alerts_active",
        "eventguard_ai_fallbacks_total",
        "eventguard_ai_cost_usd_total",
        "eventguard_opportunity_scan_seconds_bucket",
    ):
        assert series in exprs, series
