"""The health monitor's admin routes behind the ops server, and the Alertmanager webhook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.config import Settings
from common.config.workers import HealthMonitorSettings
from common.ops import EventStream, build_app
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.security.tokens import TokenService
from common.service import ServiceFactory, WorkerContext
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.health import Heartbeat
from workers.health_monitor.rules import parse_rules
from workers.health_monitor.service import HealthMonitorService

RULES = parse_rules("rules:\n  - name: Errors\n    metric: worker_error_rate\n    warning: 0.1\n")
Env = tuple[TestClient[web.Request, web.Application], TokenService, Harness, HealthMonitorService]


def _factory(webhook_url: str | None = None) -> ServiceFactory:
    def create(ctx: WorkerContext) -> HealthMonitorService:
        return HealthMonitorService(ctx, rules=RULES, collectors={})

    return create


def _settings(webhook_url: str | None = None) -> Settings:
    return Settings(
        runtime=fast_runtime_settings(),
        security=demo_settings(),
        health_monitor=HealthMonitorSettings(
            interval_s=3600, webhook_url=webhook_url, collect_redis=False
        ),
    )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """An ops server over a health monitor with one rule."""
    settings = _settings()
    async with run_workers([("health_monitor", _factory())], settings=settings) as fleet:
        auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
        app = build_app(fleet.runtime, auth=auth, stream=EventStream())
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        assert auth.tokens is not None
        async with TestClient(TestServer(app)) as client:
            yield client, auth.tokens, fleet, monitor


def _beat(rate: float) -> Heartbeat:
    return Heartbeat(
        worker="w", instance="i", started_at=datetime.now(UTC), uptime_s=1, error_rate=rate
    )


async def test_admin_lists_acks_silences_and_evaluates(env: Env) -> None:
    """An operator lists alerts, acknowledges one, adds and removes a silence, evaluates a rule."""
    client, tokens, fleet, monitor = env
    headers = {"Authorization": f"Bearer {tokens.issue('olga', 'operator')}"}
    await fleet.publish("health.heartbeat", _beat(0.5))
    await fleet.settle()
    await monitor.tick()
    alerts = (await (await client.get("/admin/health/alerts", headers=headers)).json())["alerts"]
    alerts = [a for a in alerts if a["labels"]["worker"] == "w"]
    assert [a["rule"] for a in alerts] == ["Errors"]
    ack = await client.post(f"/admin/health/alerts/{alerts[0]['fingerprint']}/ack", headers=headers)
    assert (await ack.json())["acknowledged_by"] == "olga"
    created = await client.post(
        "/admin/health/silences",
        headers=headers,
        json={"matchers": {"worker": "w"}, "duration_s": 60},
    )
    assert created.status == 201
    silence = await created.json()
    assert silence["created_by"] == "olga"
    bad = await client.post(
        "/admin/health/silences", headers=headers, json={"matchers": {}, "duration_s": -1}
    )
    assert bad.status == 400
    evaluated = await (await client.post("/admin/health/rules/Errors/eval", headers=headers)).json()
    by_worker = {series["labels"]["worker"]: series for series in evaluated["series"]}
    assert by_worker["w"]["breached"] == "warning"
    removed = await client.delete(f"/admin/health/silences/{silence['id']}", headers=headers)
    assert removed.status == 200
    assert (await client.get("/admin/health/alerts")).status == 401  # and a guest is refused


async def test_webhook_gets_alertmanager_payloads_grouped_by_rule() -> None:
    """The optional webhook receives Alertmanager v4 payloads, firing then resolved."""
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", receive)
    async with TestServer(app) as server:
        url = str(server.make_url("/hook"))
        async with run_workers([("health_monitor", _factory())], settings=_settings(url)) as fleet:
            monitor = fleet.runtime.workers["health_monitor"].service
            assert isinstance(monitor, HealthMonitorService)
            await fleet.publish("health.heartbeat", _beat(0.5))
            await fleet.settle()
            await monitor.tick()
            await fleet.publish("health.heartbeat", _beat(0.0))
            await fleet.settle()
            await monitor.tick()
            await asyncio.sleep(0)
    assert [p["status"] for p in received] == ["firing", "resolved"]
    assert received[0]["version"] == "4"
    assert received[0]["alerts"][0]["labels"]["alertname"] == "Errors"
