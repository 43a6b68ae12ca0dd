"""Several broker URLs, publishes whose confirm is lost with their connection, WAIT in Redis."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from common.bus.amqp import AmqpBroker
from common.bus.message import OutgoingMessage
from common.bus.router import Emit, Router
from common.bus.topology import QueueSpec, Topology
from common.errors import DeliveryError, NotReplicated
from common.reliability.guard import Guards
from common.store import Store
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested
from tests.integration.bus.conftest import Rig, close_connections_of, until


def _dead_url(rabbit_url: str) -> str:
    """The broker URL with a port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    parts = urlsplit(rabbit_url)
    auth = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}"))


def _request(n: int) -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id=f"m{n}", reason="ok", requested_by="t")


async def test_a_dead_first_node_is_skipped_for_the_next(rig: Rig) -> None:
    """Given a node that refuses and a live one, the broker connects to the live one at once."""
    broker = AmqpBroker(
        [_dead_url(rig.rabbit_url), rig.rabbit_url],
        metrics=rig.metrics,
        name=f"eventguard-test.{rig.worker}.nodes",
        start_timeout_s=5,
    )
    rig.brokers.append(broker)
    async with asyncio.timeout(5):
        await broker.start()
    live = urlsplit(rig.rabbit_url)
    assert broker.connected
    node = f"{live.hostname}:{live.port or 5672}"
    assert broker.nodes == {"publish": node, "consume": node}


async def test_publishes_unconfirmed_when_the_connection_dies_are_sent_again(rig: Rig) -> None:
    """The publish connection is closed while publishes stream: every publish still returns,
    the unknown ones were re-sent with their ids (counted), and every event is handled once."""
    broker = await rig.broker()
    handled: list[str] = []

    async def handler(event: Envelope[QuarantineRequested]) -> Emit:
        handled.append(event.id)
        return []

    router = Router()
    router.add(QuarantineRequested, handler)
    await rig.pipeline(broker, router)
    publisher = rig.publisher(broker)
    sent: list[str] = []
    stop = asyncio.Event()

    async def produce() -> None:  # batches of 50 in flight until told to stop
        while not stop.is_set():
            batch = [new_event("quarantine.requested", _request(n), source="it") for n in range(50)]
            sent.extend(e.id for e in batch)
            await asyncio.gather(*(publisher.publish(e) for e in batch))

    producer = asyncio.create_task(produce())
    await until(lambda: len(handled) >= 20)
    assert await close_connections_of(f"{broker.name}.publish") == 1
    await until(lambda: broker.connected and len(handled) >= len(sent) // 2, within=20)
    stop.set()
    await producer  # no DeliveryError: unconfirmed publishes were sent again
    assert rig.sample("eventguard_publish_republished_total", _labels(broker, "connection")) >= 1
    await until(lambda: set(sent) <= set(handled), within=30)
    assert sorted(handled) == sorted(set(handled))  # copies absorbed by the idempotency claim


def _labels(broker: AmqpBroker, reason: str) -> dict[str, str]:
    return {"worker": broker.name, "reason": reason}


async def test_a_write_waiting_for_a_replica_that_is_not_there_fails_retryably(
    rig: Rig,
) -> None:
    """execute_durable with WAIT 1 on a Redis without replicas raises NotReplicated after the
    guard's attempts; the write itself landed, and without WAIT it is a plain command."""
    guards = Guards()
    guards.instant()
    key = rig.prefix + "durable"
    waiting = Store(rig.redis, guard=guards.guard("redis"), wait_replicas=1, wait_timeout_ms=10)
    with pytest.raises(NotReplicated, match="0 of 1 replicas"):
        await waiting.execute_durable(lambda p: p.set(key, b"v1"))
    assert await rig.redis.get(key) == b"v1"
    plain = Store(rig.redis, guard=guards.guard("redis"))
    assert await plain.execute_durable(lambda p: p.set(key, b"v2")) is True
    assert await rig.redis.get(key) == b"v2"


async def test_a_nacking_queue_gets_fresh_channels_then_the_nack_is_raised(rig: Rig) -> None:
    """A nack replaces the publish channel and re-sends (the RabbitMQ 3.10 leader-change
    work-around), at most nack_retries times: a queue that stays full still raises."""
    broker = AmqpBroker(
        rig.rabbit_url,
        metrics=rig.metrics,
        name=f"eventguard-test.{rig.worker}.nack",
        renew_channel_s=0.05,
        nack_retries=2,
        start_timeout_s=5,
    )
    rig.brokers.append(broker)
    await broker.start()
    full = QueueSpec(
        f"eventguard.{rig.worker}",
        {"x-queue-type": "classic", "x-max-length": 1, "x-overflow": "reject-publish"},
    )
    topology = Topology(exchanges=(), queues=(full,))
    await broker.declare(topology)
    rig.topologies.append(topology)
    await broker.publish(OutgoingMessage(b"1", routing_key=full.name, exchange=""))
    with pytest.raises(DeliveryError, match="nack"):
        await broker.publish(OutgoingMessage(b"2", routing_key=full.name, exchange=""))
    assert rig.sample("eventguard_publish_republished_total", _labels(broker, "nack")) == 2
    assert rig.sample("eventguard_publish_failures_total", _labels(broker, "nack")) == 1
    assert await broker.queue_depth(full.name) == 1
