"""health_monitor with several replicas: one leader, fenced state, an outbox that retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import fakeredis
import pytest

from common.config import HealthMonitorSettings, Settings
from common.service import WorkerContext
from common.testing import fast_runtime_settings, run_workers
from workers.health_monitor.alerts import Fenced, Notification
from workers.health_monitor.evaluator import Sample
from workers.health_monitor.rules import parse_rules
from workers.health_monitor.service import HealthMonitorService

RULES = parse_rules(
    """
rules:
  - name: BrokerDown
    metric: target_up
    labels: {target: rabbitmq}
    comparison: "<"
    critical: 1
  - name: RedisDown
    metric: target_up
    labels: {target: redis}
    comparison: "<"
    critical: 1
    inhibits: [redis]
"""
)


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class World:
    """What the collectors report and what the test sink received, shared by the replicas."""

    def __init__(self) -> None:
        self.up = {"rabbitmq": 1.0, "redis": 1.0}
        self.received: list[tuple[str, str, str]] = []  # (rule, kind, notification id)
        self.failing = False

    async def collect(self) -> list[Sample]:
        return [Sample.of("target_up", v, target=t) for t, v in self.up.items()]

    async def sink(self, notes: Sequence[Notification]) -> None:
        if self.failing:
            raise ConnectionError("sink down")
        self.received.extend((n.rule.name, n.kind, n.id) for n in notes)


def _settings() -> Settings:
    return Settings(
        runtime=fast_runtime_settings(),
        health_monitor=HealthMonitorSettings(
            interval_s=3600,
            collect_redis=False,
            sink_timeout_s=0.2,
            leader_lease_s=0.3,
            leader_renew_s=0.05,
        ),
    )


@contextlib.asynccontextmanager
async def _replica(
    world: World, clock: Clock, redis: fakeredis.FakeAsyncRedis
) -> AsyncIterator[HealthMonitorService]:
    def create(ctx: WorkerContext) -> HealthMonitorService:
        return HealthMonitorService(
            ctx,
            now=clock,
            rules=RULES,
            collectors={"targets": world.collect},
            sinks={"test": world.sink},
        )

    async with run_workers([("health_monitor", create)], settings=_settings(), redis=redis) as f:
        monitor = f.runtime.workers["health_monitor"].service
        assert isinstance(monitor, HealthMonitorService)
        yield monitor


async def _leader(*monitors: HealthMonitorService) -> HealthMonitorService:
    async with asyncio.timeout(3):
        while True:
            leading = [m for m in monitors if m.leadership.leading]
            if len(leading) == 1:
                return leading[0]
            await asyncio.sleep(0.01)


async def test_two_replicas_one_leader_each_change_notified_once() -> None:
    """Two replicas evaluate the same world; only the leader notifies, so one raise and one
    resolve reach the sink, whichever replica ticks."""
    world, clock, redis = World(), Clock(), fakeredis.FakeAsyncRedis()
    async with _replica(world, clock, redis) as a, _replica(world, clock, redis) as b:
        await _leader(a, b)
        world.up["rabbitmq"] = 0.0
        for _ in range(3):
            clock.now += 15
            await a.tick()
            await b.tick()
        world.up["rabbitmq"] = 1.0
        clock.now += 15
        await a.tick()
        await b.tick()
    kinds = [(rule, kind) for rule, kind, _ in world.received]
    assert kinds == [("BrokerDown", "raised"), ("BrokerDown", "resolved")]


async def test_standby_takes_over_within_the_lease_and_keeps_the_state() -> None:
    """The leader dies without resigning; the standby takes the lease within about one lease,
    adopts the saved alert (no second raise) and sends its resolution."""
    world, clock, redis = World(), Clock(), fakeredis.FakeAsyncRedis()
    async with _replica(world, clock, redis) as a, _replica(world, clock, redis) as b:
        leader = await _leader(a, b)
        standby = b if leader is a else a
        world.up["rabbitmq"] = 0.0
        clock.now += 15
        await leader.tick()
        assert [k for _, k, _ in world.received] == ["raised"]
        assert leader._lead_task is not None
        leader._stopping = True  # the leader hangs: no renewal, no resignation
        leader._lead_task.cancel()
        await asyncio.wait({leader._lead_task})
        leader.leadership.epoch = 0
        started = asyncio.get_running_loop().time()
        assert await _leader(standby) is standby
        took = asyncio.get_running_loop().time() - started
        clock.now += 15
        await standby.tick()  # still firing: not raised again
        world.up["rabbitmq"] = 1.0
        clock.now += 15
        await standby.tick()
    assert [k for _, k, _ in world.received] == ["raised", "resolved"]
    assert took < 0.3 + 0.05 + 0.2  # lease + renew period + scheduling slack


async def test_a_failing_sink_gets_every_change_once_when_it_recovers() -> None:
    """The sink refuses while an alert is raised and resolved; once it accepts, it receives
    both, once each, with the ids they were decided under."""
    world, clock, redis = World(), Clock(), fakeredis.FakeAsyncRedis()
    async with _replica(world, clock, redis) as monitor:
        await _leader(monitor)
        world.failing = True
        world.up["rabbitmq"] = 0.0
        clock.now += 15
        decided = [n.id for n in await monitor.tick()]
        world.up["rabbitmq"] = 1.0
        clock.now += 15
        decided += [n.id for n in await monitor.tick()]
        assert world.received == []
        assert len(monitor.outbox.entries) == 2
        world.failing = False
        clock.now += 15
        await monitor.tick()
        clock.now += 15
        await monitor.tick()
    assert [(r, k) for r, k, _ in world.received] == [
        ("BrokerDown", "raised"),
        ("BrokerDown", "resolved"),
    ]
    assert [i for _, _, i in world.received] == decided


async def test_a_deposed_leader_writes_nothing() -> None:
    """A replica whose lease was taken over cannot save state: the fenced write refuses."""
    world, clock, redis = World(), Clock(), fakeredis.FakeAsyncRedis()
    async with _replica(world, clock, redis) as monitor:
        await _leader(monitor)
        await redis.set(monitor.leadership.lease_key, b"someone-else|99")
        lease = (monitor.leadership.lease_key, f"{monitor.leadership.holder}|1")
        with pytest.raises(Fenced):
            await monitor.book.commit({}, lease=lease, outbox=[], outbox_done=["x"])


async def test_redis_down_alert_reaches_the_sink_without_redis() -> None:
    """With Redis unreachable the leader stays leader (nobody can take the lease) and sends the
    RedisDown alert from memory; when Redis is back it keeps its newer memory and resolves it."""
    world, clock = World(), Clock()
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    async with _replica(world, clock, redis) as monitor:
        await _leader(monitor)
        server.connected = False
        world.up["redis"] = 0.0
        clock.now += 15
        sent = await monitor.tick()
        assert [(n.rule.name, n.kind) for n in sent] == [("RedisDown", "raised")]
        assert [(r, k) for r, k, _ in world.received] == [("RedisDown", "raised")]
        assert monitor.leadership.leading
        server.connected = True
        await asyncio.sleep(0.4)  # the lease lapsed meanwhile: the leader takes a new epoch
        world.up["redis"] = 1.0
        clock.now += 15
        await monitor.tick()
        assert [(r, k) for r, k, _ in world.received] == [
            ("RedisDown", "raised"),
            ("RedisDown", "resolved"),
        ]
