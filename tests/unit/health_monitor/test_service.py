"""The health monitor service: delivery, silences, inhibition, slow parts, restarts, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import fakeredis

from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.config import HealthMonitorSettings, Settings
from common.service import ServiceFactory, WorkerContext
from common.testing import fast_runtime_settings, run_workers
from schemas.envelope import new_event
from schemas.health import Heartbeat
from workers.health_monitor.alerts import Notification, Sink
from workers.health_monitor.collectors import Collector
from workers.health_monitor.evaluator import Sample
from workers.health_monitor.rules import Rule, parse_rules
from workers.health_monitor.service import HealthMonitorService

RULES = parse_rules(
    """
rules:
  - name: Errors
    metric: worker_error_rate
    warning: 0.1
    critical: 0.5
  - name: ModelFailing
    metric: entity_error_rate
    labels: {entity_kind: ai_model}
    critical: 0.5
    quarantine: true
  - name: BrokerDown
    metric: target_up
    labels: {target: rabbitmq}
    comparison: "<"
    critical: 1
    inhibits: [broker]
"""
)


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _settings() -> Settings:
    return Settings(
        runtime=fast_runtime_settings(),
        health_monitor=HealthMonitorSettings(
            interval_s=3600, collect_redis=False, sink_timeout_s=0.1, collector_timeout_s=0.1
        ),
    )


def _factory(
    clock: Clock,
    rules: list[Rule],
    *,
    collectors: dict[str, Collector] | None = None,
    sinks: dict[str, Sink] | None = None,
) -> ServiceFactory:
    def create(ctx: WorkerContext) -> HealthMonitorService:
        return HealthMonitorService(
            ctx, now=clock, rules=rules, collectors=collectors, sinks=sinks
        )

    return create


def _beat(error_rate: float = 0.0, **entity: float) -> Heartbeat:
    return Heartbeat(
        worker="w",
        instance="i",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        uptime_s=1,
        error_rate=error_rate,
        entity_error_rates={f"ai_model:{k}": v for k, v in entity.items()},
    )


async def test_heartbeat_alert_raised_with_entity_and_quarantine_flag() -> None:
    """A failing model in a heartbeat raises a critical alert naming it, flagged for quarantine."""
    clock = Clock()
    async with run_workers(
        [("health_monitor", _factory(clock, RULES))], settings=_settings()
    ) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        await fleet.publish("health.heartbeat", _beat(0.0, gpt=0.9))
        await fleet.settle()
        await monitor.tick()
        alert = await fleet.wait_for("health.alert.raised", lambda e: e.data.rule == "ModelFailing")
        assert alert.data.severity == "critical"
        assert (alert.data.entity_kind, alert.data.entity_id) == ("ai_model", "gpt")
        assert alert.data.quarantine is True


async def test_nonsense_heartbeat_is_dead_lettered_as_schema_violation() -> None:
    """A heartbeat with a negative rate or NaN never reaches the rules."""
    clock = Clock()
    async with run_workers(
        [("health_monitor", _factory(clock, RULES))], settings=_settings()
    ) as fleet:
        good = json.loads(_envelope_json())
        for bad in (-1.0, "NaN"):
            good["data"]["error_rate"] = bad
            await fleet.broker.publish(
                OutgoingMessage(
                    body=json.dumps(good).encode(),
                    routing_key="health.heartbeat",
                    exchange=EVENTS_EXCHANGE,
                    type="health.heartbeat",
                    user_id="test",
                )
            )
        await fleet.settle()
        reasons = [m.headers[h.REASON] for m in fleet.dead()]
        assert reasons == ["schema_violation", "schema_violation"]


def _envelope_json() -> str:
    return new_event("health.heartbeat", _beat(), source="t").model_dump_json()


async def test_silence_and_inhibition_mute_delivery_but_not_tracking() -> None:
    """A silenced alert and an alert inhibited by BrokerDown are tracked but not sent."""
    clock = Clock()
    broker_down: list[Sample] = [Sample.of("target_up", 0.0, target="rabbitmq")]

    async def collector() -> list[Sample]:
        return list(broker_down)

    factory = _factory(clock, RULES, collectors={"rabbitmq": collector})
    async with run_workers([("health_monitor", factory)], settings=_settings()) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        await monitor.book.add_silence(
            {"alertname": "ModelFailing"}, until=clock.now + 600, by="op", comment="", now=clock.now
        )
        await fleet.publish("health.heartbeat", _beat(0.9, gpt=0.9))
        await fleet.settle()
        sent = await monitor.tick()
        assert {n.rule.name for n in sent} == {"BrokerDown"}  # Errors inhibited, model silenced
        assert {a.rule for a in monitor.evaluator.alerts.values()} == {
            "BrokerDown",
            "Errors",
            "ModelFailing",
        }
        broker_down.clear()
        clock.now += 60
        await fleet.publish("health.heartbeat", _beat(0.9, gpt=0.9))
        await fleet.settle()
        sent = await monitor.tick()
        assert {(n.rule.name, n.kind) for n in sent} == {
            ("BrokerDown", "resolved"),
            ("Errors", "raised"),
        }


async def test_hanging_collector_and_sink_do_not_block_the_others() -> None:
    """A collector that hangs counts as down; a sink that hangs does not delay another sink."""
    clock = Clock()
    received: list[str] = []

    async def hang_collector() -> list[Sample]:
        await asyncio.sleep(30)
        return []

    async def hang_sink(_notes: Sequence[Notification]) -> None:
        await asyncio.sleep(30)

    async def fast_sink(notes: Sequence[Notification]) -> None:
        received.extend(n.rule.name for n in notes)

    factory = _factory(
        clock,
        RULES,
        collectors={"rabbitmq": hang_collector},
        sinks={"slow": hang_sink, "fast": fast_sink},
    )
    async with run_workers([("health_monitor", factory)], settings=_settings()) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        async with asyncio.timeout(2):
            await monitor.tick()
        assert received == ["BrokerDown"]
        failures = fleet.metrics.registry.get_sample_value(
            "eventguard_collector_failures_total", {"collector": "rabbitmq"}
        )
        assert failures == 1.0
        slow = fleet.metrics.registry.get_sample_value(
            "eventguard_alert_notifications_total", {"sink": "slow", "outcome": "failed"}
        )
        assert slow == 1.0


async def test_active_alerts_and_silences_survive_a_restart() -> None:
    """A restarted monitor keeps its firing alert (no second raise) and its silences."""
    clock = Clock()
    redis = fakeredis.FakeAsyncRedis()
    async with run_workers(
        [("health_monitor", _factory(clock, RULES))], settings=_settings(), redis=redis
    ) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        await fleet.publish("health.heartbeat", _beat(0.9))
        await fleet.settle()
        assert [n.kind for n in await monitor.tick()] == ["raised"]
        await monitor.book.add_silence(
            {"worker": "x"}, until=clock.now + 600, by="op", comment="", now=clock.now
        )
    clock.now += 30
    async with run_workers(
        [("health_monitor", _factory(clock, RULES))], settings=_settings(), redis=redis
    ) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        assert [a.rule for a in monitor.evaluator.alerts.values()] == ["Errors"]
        assert len(monitor.book.silences) == 1
        await fleet.publish("health.heartbeat", _beat(0.9))
        await fleet.settle()
        assert await monitor.tick() == []  # still firing, not raised again
