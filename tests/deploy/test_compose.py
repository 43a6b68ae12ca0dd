"""deploy/compose.yaml and its Prometheus scrape config against the code and the env example."""

from __future__ import annotations

import re
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from common.config.sections import RuntimeSettings
from tests.deploy._tools import DEPLOY, ROOT

try:
    from workers.registry import WORKERS
except ImportError as error:  # the workers are written alongside; say so instead of erroring
    pytest.skip(f"the worker registry does not import yet: {error}", allow_module_level=True)

COMPOSE_TEXT = (DEPLOY / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
_REQUIRED = re.compile(r"\$\{([A-Z0-9_]+)(:\?[^}]*)?\}")
_DURATION = re.compile(r"^(\d+)s$")


def _example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return dict(pairs)


def test_every_variable_compose_needs_is_in_the_env_example_and_empty() -> None:
    """Each ${VAR} without a default is listed in .env.example, which holds no secret value."""
    needed = {match.group(1) for match in _REQUIRED.finditer(COMPOSE_TEXT)}
    example = _example()
    assert needed <= set(example)
    secrets = {
        name: value for name, value in example.items() if "PASSWORD" in name or "KEY" in name
    }
    assert all(value in {"", "{}"} for value in secrets.values()), secrets


def test_the_env_file_is_never_committed() -> None:
    """deploy/.env is ignored by git and not tracked; only the example is."""
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"],  # noqa: S607 - git from PATH, as every developer runs it
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "deploy/.env" not in tracked
    assert "deploy/.env.example" in tracked
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/.env"],  # noqa: S607 - idem
        cwd=ROOT,
        check=False,
    )
    assert ignored.returncode == 0


def test_every_worker_runs_as_its_own_rabbitmq_user() -> None:
    """Each worker is a service running `run WORKER` over a broker URL of its own user."""
    services = COMPOSE["services"]
    for worker in WORKERS:
        service = services[worker]
        assert service["command"] == ["run", worker]
        environment = service["environment"]
        assert environment["EVENTGUARD_BROKER_USER"] == worker
        assert urlsplit(environment["EVENTGUARD_BROKER_URL"]).username == worker
        assert "profiles" not in service, f"{worker} would not start with a plain `up`"


def test_workers_get_longer_to_stop_than_their_drain_deadline() -> None:
    """stop_grace_period exceeds EVENTGUARD_RUNTIME__DRAIN_TIMEOUT_S (default and configured)."""
    for worker in WORKERS:
        service = COMPOSE["services"][worker]
        grace = _DURATION.match(service["stop_grace_period"])
        assert grace is not None
        drain = float(service["environment"].get("EVENTGUARD_RUNTIME__DRAIN_TIMEOUT_S", 0))
        assert int(grace.group(1)) > max(drain, RuntimeSettings().drain_timeout_s)


def test_redis_persists_with_aof_and_rabbitmq_exports_metrics() -> None:
    """Redis runs with appendonly; RabbitMQ loads the management and Prometheus plugins."""
    assert "--appendonly" in COMPOSE["services"]["redis"]["command"]
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_management" in plugins
    assert "rabbitmq_prometheus" in plugins


def test_prometheus_scrapes_every_worker_and_rabbitmq() -> None:
    """The compose scrape config has one target per worker, labelled with its name."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        group["labels"]["worker"]: group["targets"]
        for group in jobs["eventguard"]["static_configs"]
    }
    assert targets == {worker: [f"{worker}:8080"] for worker in WORKERS}
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["rabbitmq:15692"]
    volumes = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in volumes


def test_the_console_runs_beside_the_workers_as_its_own_user() -> None:
    """The `console` service runs `eventguard console` as RabbitMQ user `console` on 8090."""
    service = COMPOSE["services"]["console"]
    assert service["command"] == ["console"]
    environment = service["environment"]
    assert environment["EVENTGUARD_BROKER_USER"] == "console"
    assert urlsplit(environment["EVENTGUARD_BROKER_URL"]).username == "console"
    assert service["ports"] == [f"127.0.0.1:{environment['EVENTGUARD_CONSOLE__PORT']}:8090"]
    assert "profiles" not in service
