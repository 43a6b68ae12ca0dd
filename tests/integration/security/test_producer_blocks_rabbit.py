"""Issue 14, finding 9: a producer the quarantine blocks is contained by every worker, across
runtimes, on the real RabbitMQ and Redis.

Two runtimes, each with its own broker connections, as two processes would have: one runs
the quarantine worker, the other a plain worker. The block travels as the
``quarantine.entry.added`` broadcast; a third runtime started later (a restarted process)
learns it from Redis. Worker and queue names carry a random suffix; the shared exchanges and
``eventguard.dead`` keep their production names, as the runtime declares them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiormq
import pytest
from prometheus_client import CollectorRegistry

from common.bus import headers as h
from common.bus.amqp import AmqpBroker
from common.bus.broker import Broker
from common.bus.pipeline import allow_all
from common.bus.publisher import to_message
from common.bus.router import Emit
from common.bus.topology import worker_topology
from common.config import QuarantineSettings, Settings
from common.metrics import Metrics
from common.runtime import Runtime
from common.service import BaseService, ServiceFactory, WorkerContext
from common.store import Store, connect_redis
from common.testing import forget_prefix
from schemas.envelope import Actor, Envelope, Payload, new_event
from schemas.marketplace import StrategyRevoked
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested
from tests.integration.bus.conftest import PRODUCER, fast_settings
from workers.quarantine import QuarantineService

VICTIM_TYPE = "marketplace.strategy.revoked"


class Victim(BaseService):
    """A worker that counts the revocations it handles, by user."""

    handled: list[str]

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.handled = []
        self.router.add(StrategyRevoked, self.handle)

    async def handle(self, event: Envelope[StrategyRevoked]) -> Emit:
        self.handled.append(event.data.user_id)
        return []


async def _until(check: Callable[[], Any], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await _value(check()):
            await asyncio.sleep(0.02)


async def _value(result: Any) -> Any:
    return await result if asyncio.iscoroutine(result) else result


class Fleet:
    """Runtimes of one test: each one its own broker connections, one shared Redis prefix."""

    def __init__(self, rabbit_url: str, redis_url: str) -> None:
        self.rabbit_url = rabbit_url
        self.suffix = uuid.uuid4().hex[:8]
        self.redis = connect_redis(redis_url)
        self.settings = Settings(
            broker_user=PRODUCER,
            redis_key_prefix=f"egtest:blocks-{self.suffix}:",
            runtime=fast_settings(heartbeat_interval_s=3600.0, drain_timeout_s=2.0),
            quarantine=QuarantineSettings(tick_s=3600.0),
        )
        self.stack = contextlib.AsyncExitStack()
        self.queues: set[str] = set()

    async def runtime(self, factories: list[tuple[str, ServiceFactory]]) -> Runtime:
        """Start a runtime over fresh broker connections (a process of its own, in effect)."""
        metrics = Metrics(CollectorRegistry())
        broker = AmqpBroker(
            self.rabbit_url, metrics=metrics, name=f"eventguard-test.blocks-{self.suffix}"
        )
        runtime = Runtime(
            settings=self.settings,
            factories=factories,
            broker=broker,
            store=Store(self.redis, prefix=self.settings.redis_key_prefix),
            metrics=metrics,
            authorize=allow_all,  # the producer policy is not under test: the blocks are
        )
        await self.stack.enter_async_context(runtime.lifespan())
        for name, running in runtime.workers.items():
            topology = worker_topology(name, running.service.router.event_types, self.settings)
            self.queues.update(q.name for q in topology.queues if name in q.name)
        return runtime

    async def publish(
        self, broker: Broker, event_type: str, data: Payload, *, producer: str, **kw: Any
    ) -> None:
        """Publish as the AMQP user ``guest`` relaying for ``producer`` (as a retry would)."""
        event = new_event(event_type, data, source="it", **kw)
        await broker.publish(to_message(event, user_id=PRODUCER, headers={h.PRODUCER: producer}))

    async def close(self) -> None:
        """Stop every runtime, delete the queues declared for this test and its Redis keys."""
        try:
            await self.stack.aclose()
            async with aiormq.connect(self.rabbit_url) as conn:
                channel = await conn.channel()
                for queue in sorted(self.queues):
                    await channel.queue_delete(queue)
            await forget_prefix(self.redis, self.settings.redis_key_prefix)
        finally:
            await self.redis.aclose()


@pytest.fixture
async def fleet(rabbit_url: str, redis_url: str) -> AsyncIterator[Fleet]:
    """A fleet of runtimes for one test, cleaned up after."""
    fleet = Fleet(rabbit_url, redis_url)
    try:
        yield fleet
    finally:
        await fleet.close()


async def test_a_blocked_producer_is_dead_lettered_by_another_runtime(fleet: Fleet) -> None:
    """The quarantine (runtime A) blocks mallory; the worker in runtime B dead-letters
    mallory's events as producer_blocked, and A records them; a restarted B (runtime C) knows
    the block from Redis; a release lets mallory through again. Other producers pass all along.
    """
    quarantine_name, victim_name = f"quarantine-{fleet.suffix}", f"victim-{fleet.suffix}"
    services: dict[str, Any] = {}

    def keep(name: str, factory: ServiceFactory) -> ServiceFactory:
        def make(ctx: WorkerContext) -> Any:
            services[name] = factory(ctx)
            return services[name]

        return make

    a = await fleet.runtime([(quarantine_name, keep("q", QuarantineService))])
    b = await fleet.runtime([(victim_name, keep("b", Victim))])
    quarantine: QuarantineService = services["q"]
    victim: Victim = services["b"]
    broker = a.broker
    await fleet.publish(broker, VICTIM_TYPE, StrategyRevoked(user_id="m0", strategy="s"),
                        producer="mallory")  # fmt: skip
    await _until(lambda: victim.handled == ["m0"])

    block = QuarantineRequested(
        kind="producer", entity_id="mallory", reason="abuse", requested_by="it", ttl_s=600
    )
    await fleet.publish(broker, "quarantine.requested", block, producer="ops")
    await _until(lambda: victim.quarantine.is_quarantined("producer", "mallory"))
    await fleet.publish(broker, VICTIM_TYPE, StrategyRevoked(user_id="m1", strategy="s"),
                        producer="mallory")  # fmt: skip
    await fleet.publish(broker, VICTIM_TYPE, StrategyRevoked(user_id="a1", strategy="s"),
                        producer="alice")  # fmt: skip
    await _until(lambda: "a1" in victim.handled)

    async def recorded() -> list[dict[str, Any]]:
        _, rows = await quarantine.repo.search(reason="producer_blocked")
        return list(rows)

    await _until(recorded)
    (row,) = await recorded()
    assert (row["producer"], row["event_type"]) == ("mallory", VICTIM_TYPE)
    assert "m1" not in victim.handled

    # A restarted worker process: runtime B goes, runtime C (same worker) loads the block.
    await b.broker.cancel(b.workers[victim_name].tags[0])
    restarted = await fleet.runtime([(victim_name, keep("c", Victim))])
    again: Victim = services["c"]
    assert again.quarantine.is_quarantined("producer", "mallory")
    assert restarted is not b

    _, entities = await quarantine.repo.search(kind="producer")
    (entity,) = entities
    release = QuarantineReleaseRequested(record_id=entity["id"])
    await fleet.publish(broker, "quarantine.release.requested", release, producer="operator",
                        actor=Actor(subject="olga", role="operator"))  # fmt: skip
    await _until(lambda: not again.quarantine.is_quarantined("producer", "mallory"))
    await fleet.publish(broker, VICTIM_TYPE, StrategyRevoked(user_id="m2", strategy="s"),
                        producer="mallory")  # fmt: skip
    await _until(lambda: "m2" in again.handled + victim.handled)
