"""A per-test rig on the real RabbitMQ and Redis.

Every name a test declares starts with ``eventguard.<worker>`` where ``<worker>`` carries the
test's name and a random suffix; even the exchanges and the dead-letter queue that production
shares (``eventguard.events``, ``eventguard.dlx``, ``eventguard.dead`` and its
``.unrecorded``, ``eventguard.unrouted``) get per-test names, so parallel runs never see each
other's messages. The rig deletes what it declared and the Redis keys under its prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiormq
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from common.bus.amqp import AmqpBroker
from common.bus.idempotency import Idempotency
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.pipeline import Pipeline, allow_all
from common.bus.publisher import Publisher
from common.bus.router import Router
from common.bus.topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    UNRECORDED_QUEUE,
    UNROUTED_EXCHANGE,
    ExchangeSpec,
    QueueSpec,
    Topology,
    worker_topology,
)
from common.config import RuntimeSettings, Settings
from common.metrics import Metrics
from common.store import Store, connect_redis
from common.testing import forget_prefix

PRODUCER = "guest"  # RabbitMQ checks user_id against the connection's user


def isolated_topology(
    worker: str, event_types: Sequence[str], settings: RuntimeSettings
) -> tuple[Topology, dict[str, str]]:
    """``worker_topology`` with every shared name replaced by a per-worker one."""
    names = {
        EVENTS_EXCHANGE: f"eventguard.{worker}.events",
        DEAD_LETTER_EXCHANGE: f"eventguard.{worker}.dlx",
        DEAD_QUEUE: f"eventguard.{worker}.dead",
        UNRECORDED_QUEUE: f"eventguard.{worker}.dead.unrecorded",
        UNROUTED_EXCHANGE: f"eventguard.{worker}.unrouted",  # also the unrouted queue's name
    }
    base = worker_topology(worker, event_types, Settings(runtime=settings))

    def rename(name: str) -> str:
        return names.get(name, name)

    def arg(value: str | int) -> str | int:
        return rename(value) if isinstance(value, str) else value

    exchanges = tuple(
        ExchangeSpec(rename(e.name), e.type, rename(e.alternate) if e.alternate else None)
        for e in base.exchanges
    )
    queues = tuple(
        QueueSpec(
            rename(q.name),
            {k: arg(v) for k, v in q.arguments.items()},
            tuple((rename(x), key) for x, key in q.bindings),
        )
        for q in base.queues
    )
    return replace(base, exchanges=exchanges, queues=queues), names


def fast_settings(**overrides: Any) -> RuntimeSettings:
    """Retry tiers of 50-100 ms and three attempts, so retries finish in well under a second."""
    values: dict[str, Any] = {
        "retry_delays_s": (0.05, 0.1),
        "max_attempts": 3,
        "handler_timeout_s": 5.0,
        "prefetch": 20,
        "delivery_limit": 5,
        **overrides,
    }
    return RuntimeSettings(**values)


@dataclass
class Rig:
    """One test's broker, names, Redis prefix and collectors."""

    worker: str
    rabbit_url: str
    redis: Redis
    metrics: Metrics = field(default_factory=lambda: Metrics(CollectorRegistry()))
    settings: RuntimeSettings = field(default_factory=fast_settings)
    brokers: list[AmqpBroker] = field(default_factory=list)
    topologies: list[Topology] = field(default_factory=list)
    dead: list[IncomingMessage] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """The Redis key prefix of this test."""
        return f"egtest:{self.worker}:"

    def names(self) -> dict[str, str]:
        """The per-test names of the shared exchanges and queues."""
        return isolated_topology(self.worker, [], self.settings)[1]

    @property
    def events(self) -> str:
        """This test's events exchange."""
        return self.names()[EVENTS_EXCHANGE]

    @property
    def work_queue(self) -> str:
        """This test's work queue."""
        return f"eventguard.{self.worker}"

    async def broker(self, role: str = "main") -> AmqpBroker:
        """A started broker whose connections are named after the test."""
        broker = AmqpBroker(
            self.rabbit_url,
            metrics=self.metrics,
            name=f"eventguard-test.{self.worker}.{role}",
            reconnect_base_s=0.05,
            reconnect_max_delay_s=0.5,
            publish_timeout_s=10,
            start_timeout_s=10,
        )
        self.brokers.append(broker)
        await broker.start()
        return broker

    async def declare(self, broker: AmqpBroker, event_types: Sequence[str]) -> Topology:
        """Declare this test's isolated topology for ``event_types``."""
        topology, _ = isolated_topology(self.worker, event_types, self.settings)
        await broker.declare(topology)
        self.topologies.append(topology)
        return topology

    def publisher(self, broker: AmqpBroker) -> Publisher:
        """A publisher onto this test's events exchange."""
        return Publisher(
            broker, worker=self.worker, user_id=PRODUCER, metrics=self.metrics, exchange=self.events
        )

    async def pipeline(
        self,
        broker: AmqpBroker,
        router: Router,
        *,
        idempotent: bool = True,
        lease_s: float | None = None,
    ) -> Pipeline:
        """Declare, build the pipeline over ``router``, consume the work and the dead queue;
        claims last ``lease_s`` (default: the handler timeout plus a second)."""
        topology = await self.declare(broker, router.event_types)
        idempotency = (
            Idempotency(
                Store(self.redis, prefix=self.prefix),
                worker=self.worker,
                lease_s=lease_s or self.settings.handler_timeout_s + 1,
                done_ttl_s=600,
            )
            if idempotent
            else None
        )
        pipeline = Pipeline(
            worker=self.worker,
            router=router,
            broker=broker,
            publisher=self.publisher(broker),
            idempotency=idempotency,
            settings=self.settings,
            metrics=self.metrics,
            authorize=allow_all,
            retry_queues=topology.retry_queues,
            dead_letter_exchange=self.names()[DEAD_LETTER_EXCHANGE],
        )
        await broker.consume(topology.work_queue, pipeline, prefetch=self.settings.prefetch)
        await broker.consume(self.names()[DEAD_QUEUE], self._collect_dead, prefetch=100)
        return pipeline

    async def _collect_dead(self, message: IncomingMessage) -> None:
        self.dead.append(message)
        await message.ack()

    async def publish_raw(self, broker: AmqpBroker, body: bytes, **properties: Any) -> None:
        """Publish bytes to the events exchange with routing key quarantine.requested."""
        await broker.publish(
            OutgoingMessage(
                body=body,
                routing_key=properties.pop("routing_key", "quarantine.requested"),
                exchange=self.events,
                **properties,
            )
        )

    def count(self, outcome: str, event_type: str = "quarantine.requested") -> float:
        """The consumed-messages counter for ``outcome``."""
        value = self.metrics.registry.get_sample_value(
            "eventguard_messages_consumed_total",
            {"worker": self.worker, "type": event_type, "outcome": outcome},
        )
        return value or 0.0

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Any metric sample of this test's registry (0 when absent)."""
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    async def cleanup(self) -> None:
        """Close the brokers, delete every queue and exchange declared, drop the Redis keys."""
        for broker in self.brokers:
            await broker.close()
        async with aiormq.connect(
            self.rabbit_url, client_properties={"connection_name": f"eventguard-test.{self.worker}"}
        ) as conn:
            channel = await conn.channel()
            for topology in self.topologies:
                for queue in topology.queues:
                    await channel.queue_delete(queue.name)
                for exchange in topology.exchanges:
                    await channel.exchange_delete(exchange.name)
        await forget_prefix(self.redis, self.prefix)


async def until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``condition`` every 10 ms; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


async def close_connections_of(name_prefix: str) -> int:
    """Close, from the server side, every connection whose connection_name starts with
    ``name_prefix`` (rabbitmqctl: the management API lists new connections only after its
    stats interval). Returns how many were closed."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("INTEGRATION SKIPPED: rabbitmqctl is needed to close connections server-side")
    listing = await _run(ctl, "-q", "list_connections", "pid", "client_properties")
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if re.search(rf'"connection_name",(?:longstr,)?"{re.escape(name_prefix)}', line)
    ]
    await asyncio.gather(
        *(_run(ctl, "close_connection", pid, "eventguard integration test") for pid in pids)
    )
    return len(pids)


async def _run(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {err.decode(errors='replace')[:300]}")
    return out.decode(errors="replace")


@contextlib.asynccontextmanager
async def open_rig(
    request: pytest.FixtureRequest, rabbit_url: str, redis_url: str, label: str = ""
) -> AsyncIterator[Rig]:
    """A rig named after the test (``it-<label>-<test>-<random>``) on the real servers;
    everything it declared is deleted afterwards."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30]
    client = connect_redis(redis_url)
    name = "-".join(part for part in ("it", label, test, uuid.uuid4().hex[:6]) if part)
    rig = Rig(worker=name, rabbit_url=rabbit_url, redis=client)
    try:
        yield rig
    finally:
        try:
            await rig.cleanup()
        finally:
            await client.aclose()


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, rabbit_url: str, redis_url: str
) -> AsyncIterator[Rig]:
    """A per-test rig; everything it declared is deleted afterwards."""
    async with open_rig(request, rabbit_url, redis_url) as opened:
        yield opened
