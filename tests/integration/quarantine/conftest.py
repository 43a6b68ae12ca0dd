"""A quarantine rig on the real RabbitMQ and Redis: a poison worker's pipeline and the
quarantine worker, wired by hand onto the per-test topology of ``tests/integration/bus``."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from common.bus.amqp import AmqpBroker
from common.bus.idempotency import Idempotency
from common.bus.message import IncomingMessage
from common.bus.pipeline import Pipeline, allow_all
from common.bus.publisher import Publisher
from common.bus.raw import RawPipeline
from common.bus.router import Emit, Router
from common.bus.topology import DEAD_LETTER_EXCHANGE, DEAD_QUEUE, QueueSpec, Topology
from common.config import QuarantineSettings, Settings
from common.errors import Reject
from common.service import WorkerContext
from common.store import Store, connect_redis
from schemas.envelope import Envelope
from schemas.registry import payload_model
from tests.integration.bus.conftest import PRODUCER, Rig
from workers.quarantine import QuarantineService

POISON_TYPE = "marketplace.strategy.revoked"
# Also poison, but not watched by the spy queue (the 10,000-message flood uses it).
FLOOD_TYPE = "marketplace.strategy.purchased"


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Poison:
    """A worker handler that rejects until told to accept."""

    accept: bool = False
    calls: list[str] = field(default_factory=list)

    async def handle(self, event: Envelope[Any]) -> Emit:
        self.calls.append(event.id)
        if self.accept:
            return []
        raise Reject("this can never work")


@dataclass
class QuarantineRig:
    """The poison worker, the quarantine worker and a spy queue on the events exchange."""

    rig: Rig
    broker: AmqpBroker
    clock: Clock
    poison: Poison
    spy: list[IncomingMessage]
    services: list[QuarantineService] = field(default_factory=list)

    @property
    def store(self) -> Store:
        """The per-test store."""
        return Store(self.rig.redis, prefix=self.rig.prefix)

    async def start_quarantine(self, **config: Any) -> QuarantineService:
        """A quarantine service on the per-test dead queue (a fresh one = a restart)."""
        settings = Settings(quarantine=QuarantineSettings(**{"tick_s": 3600.0, **config}))
        publisher = Publisher(
            self.broker,
            worker="quarantine",
            user_id=PRODUCER,
            metrics=self.rig.metrics,
            exchange=self.rig.events,
        )
        ctx = WorkerContext(
            "quarantine", settings, self.store, self.broker, publisher, self.rig.metrics
        )
        service = QuarantineService(ctx, now=self.clock)
        await service.start()
        raw = RawPipeline(
            worker="quarantine",
            handler=service.on_dead,
            publisher=publisher,
            metrics=self.rig.metrics,
            timeout_s=10,
            retry_pause_s=0.05,
        )
        tag = await self.broker.consume(self.rig.names()[DEAD_QUEUE], raw, prefetch=200)
        service._tag = tag  # type: ignore[attr-defined]
        self.services.append(service)
        return service

    async def stop_quarantine(self, service: QuarantineService) -> None:
        """Stop consuming and stop the service (what a worker restart does)."""
        await self.broker.cancel(service._tag)  # type: ignore[attr-defined]
        await service.stop()
        self.services.remove(service)

    def released_copies(self) -> list[IncomingMessage]:
        """Messages on the events exchange that carry a release id."""
        return [m for m in self.spy if m.headers.get("x-eventguard-release-id")]


@pytest.fixture
async def qrig(
    request: pytest.FixtureRequest, rabbit_url: str, redis_url: str
) -> AsyncIterator[QuarantineRig]:
    """A poison worker and a quarantine worker on an isolated topology; cleaned up after."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30]
    client = connect_redis(redis_url)
    rig = Rig(worker=f"itq-{test}-{uuid.uuid4().hex[:6]}", rabbit_url=rabbit_url, redis=client)
    try:
        broker = await rig.broker()
        router = Router()
        poison = Poison()
        router.add(payload_model(POISON_TYPE), poison.handle)
        router.add(payload_model(FLOOD_TYPE), poison.handle)
        topology = await rig.declare(broker, router.event_types)
        spy_name = f"eventguard.{rig.worker}.spy"
        spy_topology = Topology(
            exchanges=(),
            queues=(
                QueueSpec(
                    spy_name,
                    {"x-queue-type": "quorum"},
                    tuple(
                        (rig.events, key)
                        for key in (POISON_TYPE, "native.#", "quarantine.entry.released")
                    ),
                ),
            ),
        )
        await broker.declare(spy_topology)
        rig.topologies.append(spy_topology)
        spy: list[IncomingMessage] = []

        async def collect(message: IncomingMessage) -> None:
            spy.append(message)
            await message.ack()

        await broker.consume(spy_name, collect, prefetch=500)
        pipeline = Pipeline(
            worker=rig.worker,
            router=router,
            broker=broker,
            publisher=rig.publisher(broker),
            idempotency=Idempotency(
                Store(client, prefix=rig.prefix), worker=rig.worker, lease_s=5, done_ttl_s=600
            ),
            settings=rig.settings,
            metrics=rig.metrics,
            authorize=allow_all,
            retry_queues=topology.retry_queues,
            dead_letter_exchange=rig.names()[DEAD_LETTER_EXCHANGE],
        )
        await broker.consume(topology.work_queue, pipeline, prefetch=200)
        q = QuarantineRig(rig, broker, Clock(), poison, spy)
        yield q
        for service in list(q.services):
            await q.stop_quarantine(service)
    finally:
        try:
            await rig.cleanup()
        finally:
            await client.aclose()
