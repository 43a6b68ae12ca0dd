"""Three replicas of every worker under load, then one replica of each SIGKILLed mid-run.

What it checks: the ledger is clean (lost 0, duplicated 0); an alert is raised once and
resolved once at a webhook sink although the health_monitor leader is killed while it fires
(a standby takes over: the time is reported); a quarantine entry reaches all three ai_fallback
replicas (their model-state gauge) within the README's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common.bus.amqp import AmqpBroker
from common.bus.publisher import to_message
from schemas.envelope import new_event
from schemas.quarantine import QuarantineRequested
from tests.e2e.conftest import (
    FLEET,
    TOPOLOGIES,
    Fleet,
    LoadFactory,
    Recorder,
    WorkerProcess,
    assert_clean,
    free_port,
)
from workers.ai_fallback.simulator import ProviderSimulator, Step

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RESYNC_S = 3.0
RULES = """
rules:
  - name: ProbeDown
    metric: target_up
    labels: {target: probe}
    comparison: "<"
    critical: 1
    summary: "the test's probe answers 503"
"""


class Outside:
    """The world the fleet watches and reports to: a probe health_monitor polls, and an
    Alertmanager-style webhook that records every alert it is sent."""

    def __init__(self) -> None:
        self.up = True
        self.alerts: list[tuple[str, str, str, float]] = []  # (rule, fingerprint, status, at)
        self.port = free_port()

    async def probe(self, _request: web.Request) -> web.Response:
        return web.Response(status=200 if self.up else 503)

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.monotonic()
        for alert in body["alerts"]:
            rule = alert["labels"]["alertname"]
            self.alerts.append((rule, alert["fingerprint"], alert["status"], now))
        return web.json_response({"ok": True})

    def count(self, status: str) -> int:
        return sum(1 for _, _, s, _ in self.alerts if s == status)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Outside]:
        app = web.Application()
        app.router.add_get("/probe", self.probe)
        app.router.add_post("/alerts", self.webhook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()


async def _until(condition: Any, within: float, what: str) -> float:
    """Poll the async ``condition`` every 50 ms; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


async def _leader(monitors: list[WorkerProcess]) -> WorkerProcess | None:
    leading = []
    for process in monitors:
        with contextlib.suppress(aiohttp.ClientError, OSError):  # a killed one
            if await process.metric("eventguard_health_monitor_leader") == 1:
                leading.append(process)
    return leading[0] if len(leading) == 1 else None


def _configure(fleet: Fleet, outside: Outside, simulator_url: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    models = [
        {
            "name": name,
            "provider": "openai",
            "endpoint": simulator_url,
            "key_ref": "sim",
            "context_window": 8000,
            "max_output": 256,
            "timeout_s": 2,
            "priority": priority,
        }
        for name, priority in (("m1", 100), ("spare", 200))
    ]
    base = f"http://127.0.0.1:{outside.port}"
    fleet.env.update(
        {
            "EVENTGUARD_AI_FALLBACK__MODELS": json.dumps(models),
            "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS": json.dumps({"sim": secrets.token_hex(8)}),
            "EVENTGUARD_RUNTIME__CLAIM_LEASE_S": "3",
            "EVENTGUARD_RUNTIME__REPLICA_RESYNC_S": str(RESYNC_S),
            "EVENTGUARD_HEALTH_MONITOR__RULES_FILE": str(rules),
            "EVENTGUARD_HEALTH_MONITOR__INTERVAL_S": "0.5",
            "EVENTGUARD_HEALTH_MONITOR__LEADER_LEASE_S": "2",
            "EVENTGUARD_HEALTH_MONITOR__LEADER_RENEW_S": "0.5",
            "EVENTGUARD_HEALTH_MONITOR__COLLECT_REDIS": "false",
            "EVENTGUARD_HEALTH_MONITOR__READY_TARGETS": json.dumps({"probe": f"{base}/probe"}),
            "EVENTGUARD_HEALTH_MONITOR__WEBHOOK_URL": f"{base}/alerts",
        }
    )


async def _quarantine_spare(producer: AmqpBroker) -> None:
    request = QuarantineRequested(
        kind="ai_model", entity_id="spare", reason="e2e", requested_by="e2e", ttl_s=600
    )
    event = new_event("quarantine.requested", request, source="e2e")
    await producer.publish(to_message(event, user_id="guest"))


async def test_three_replicas_of_every_worker_survive_a_sigkill_of_one_of_each(
    fleet: Fleet,
    load: LoadFactory,
    recorder: Recorder,
    producer: AmqpBroker,
    tmp_path: Path,
) -> None:
    """Three replicas of each worker under load; mid-run one replica of each (the
    health_monitor leader among them) is SIGKILLed. Nothing is lost or done twice, the alert
    is raised once and resolved once, and the quarantine reaches every ai_fallback replica."""
    simulator = ProviderSimulator(latency_s=0.02)
    url = await simulator.start()
    simulator.set_default("m1", Step("ok"))
    simulator.set_default("spare", Step("ok"))
    outside = Outside()
    _configure(fleet, outside, url, tmp_path)
    try:
        async with outside.serving():
            processes: dict[str, list[WorkerProcess]] = {}
            for worker in FLEET:  # one worker at a time: twelve cold starts on two cores
                processes[worker] = await fleet.start(*[worker] * 3)
            generator = load()
            await generator.start(TOPOLOGIES)
            publishing = asyncio.create_task(generator.publish(600, rate=40.0))

            async def one_leader() -> bool:
                return await _leader(processes["health_monitor"]) is not None

            await _until(one_leader, 15, "one health_monitor leader")

            # A quarantine entry must reach all three ai_fallback replicas.
            asked = time.monotonic()
            await _quarantine_spare(producer)

            async def all_quarantined() -> bool:
                states = [
                    await p.metric("eventguard_ai_model_state", model="spare")
                    for p in processes["ai_fallback"]
                ]
                return all(s == 5 for s in states)

            # The bound: one resync period after the entry is in Redis (the live copy on each
            # replica's own queue usually comes first), plus the quarantine worker's own time
            # to record it under this load.
            await _until(all_quarantined, 2 * RESYNC_S + 5, "spare quarantined everywhere")
            converged_s = time.monotonic() - asked

            # The probe goes down: one alert raised.
            outside.up = False

            async def raised() -> bool:
                return outside.count("firing") >= 1

            await _until(raised, 15, "ProbeDown raised")
            await asyncio.sleep(1.0)  # the leader has crossed the delivery off

            # SIGKILL the leader and one replica of every other worker, mid-run.
            leader = await _leader(processes["health_monitor"])
            assert leader is not None
            victims = [leader] + [processes[w][0] for w in FLEET if w != "health_monitor"]
            for victim in victims:
                victim.signal(signal.SIGKILL)
            survivors = [p for p in processes["health_monitor"] if p is not leader]

            async def taken_over() -> bool:
                return await _leader(survivors) is not None

            takeover_s = await _until(taken_over, 15, "a standby took the lease")

            # The probe recovers: the new leader resolves the alert it adopted.
            outside.up = True

            async def resolved() -> bool:
                return outside.count("resolved") >= 1

            await _until(resolved, 15, "ProbeDown resolved")
            await publishing
            report = await generator.wait(120)
            assert_clean(report, generator)
            await asyncio.sleep(2.0)  # a duplicate notification would have arrived by now
    finally:
        await simulator.close()
    probe = [a for a in outside.alerts if a[0] == "ProbeDown"]
    assert [s for _, _, s, _ in probe] == ["firing", "resolved"], outside.alerts
    assert len({fp for _, fp, _, _ in probe}) == 1
    recorder.record(
        "replicas_fleet",
        **report.as_dict(),
        replicas_per_worker=3,
        killed=[v.worker for v in victims],
        health_monitor_takeover_s=round(takeover_s, 2),
        quarantine_view_convergence_s=round(converged_s, 2),
        resync_bound_s=RESYNC_S,
        notifications={"firing": outside.count("firing"), "resolved": outside.count("resolved")},
    )
