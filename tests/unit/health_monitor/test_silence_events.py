"""``health.silence.requested`` / ``health.silence.expire.requested``: operators silence alerts by
events, and the leader's next evaluation honours the silence."""

from __future__ import annotations

from datetime import UTC, datetime

from common.config import HealthMonitorSettings, Settings
from common.service import WorkerContext
from common.testing import fast_runtime_settings, run_workers
from schemas.envelope import Actor
from schemas.health import Heartbeat, SilenceExpireRequested, SilenceRequested
from workers.health_monitor.rules import parse_rules
from workers.health_monitor.service import HealthMonitorService
from workers.health_monitor.silences import silence_id_of

OPERATOR = Actor(subject="alice", role="operator")
RULES = parse_rules(
    """
rules:
  - name: Errors
    metric: worker_error_rate
    critical: 0.5
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
        health_monitor=HealthMonitorSettings(interval_s=3600, collect_redis=False),
    )


def _beat(error_rate: float) -> Heartbeat:
    return Heartbeat(
        worker="w", instance="i", started_at=datetime(2026, 1, 1, tzinfo=UTC), uptime_s=1,
        error_rate=error_rate,
    )  # fmt: skip


async def test_a_silence_requested_by_an_operator_mutes_the_next_round_until_expired() -> None:
    """The request answers health.silence.created (id from the event id); the next raise is
    silenced; expiring answers health.silence.expired and the alert is sent again."""
    clock = Clock()

    def create(ctx: WorkerContext) -> HealthMonitorService:
        return HealthMonitorService(ctx, now=clock, rules=RULES)

    async with run_workers([("health_monitor", create)], settings=_settings()) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        request = SilenceRequested(matchers={"alertname": "Errors"}, duration_s=600, comment="x")
        sent = await fleet.publish("health.silence.requested", request, actor=OPERATOR)
        created = await fleet.wait_for("health.silence.created")
        assert created.data.silence_id == silence_id_of(sent.id)
        assert created.data.created_by == "alice"
        assert created.data.expires_at.timestamp() == clock.now + 600
        await fleet.publish("health.heartbeat", _beat(0.9))
        await fleet.settle()
        assert await monitor.tick() == []  # firing, but silenced
        expire = SilenceExpireRequested(silence_id=created.data.silence_id)
        await fleet.publish("health.silence.expire.requested", expire, actor=OPERATOR)
        expired = await fleet.wait_for("health.silence.expired")
        assert (expired.data.removed, expired.data.expired_by) == (True, "alice")
        clock.now += 1
        assert [n.rule.name for n in await monitor.tick()] == ["Errors"]
        await fleet.publish("health.silence.expire.requested", expire, actor=OPERATOR)
        await fleet.wait_for("health.silence.expired", lambda e: not e.data.removed)


async def test_silence_requests_without_an_operator_actor_are_dead_lettered() -> None:
    """No actor, or a viewer: dead-lettered unauthorized; no silence is written."""
    clock = Clock()

    def create(ctx: WorkerContext) -> HealthMonitorService:
        return HealthMonitorService(ctx, now=clock, rules=RULES)

    async with run_workers([("health_monitor", create)], settings=_settings()) as fleet:
        monitor = fleet.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        request = SilenceRequested(matchers={"alertname": "Errors"}, duration_s=60)
        await fleet.publish("health.silence.requested", request)
        await fleet.publish(
            "health.silence.requested", request, actor=Actor(subject="bob", role="user")
        )
        await fleet.settle()
        assert [str(m.headers.get("x-eventguard-reason")) for m in fleet.dead()] == [
            "unauthorized",
            "unauthorized",
        ]
        _, silences = await monitor.book.load()
        assert silences == {}
