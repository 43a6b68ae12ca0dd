"""The AMQP broker on the real RabbitMQ: confirms, returns, topology, consumer recovery."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aiormq
import pytest

from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import QueueSpec, Topology
from common.errors import ConfigError, DeliveryError
from tests.integration.bus.conftest import Rig, until


async def test_publish_consume_ack_with_properties(rig: Rig) -> None:
    """Published messages arrive once with their properties and are acked (queue empties)."""
    broker = await rig.broker()
    topology = await rig.declare(broker, ["quarantine.requested"])
    got: list[IncomingMessage] = []

    async def handler(message: IncomingMessage) -> None:
        got.append(message)
        await message.ack()

    await broker.consume(topology.work_queue, handler, prefetch=10)
    assert broker.active_consumers(topology.work_queue) == 1
    assert rig.sample("eventguard_active_consumers", {"queue": topology.work_queue}) == 1
    sent_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await asyncio.gather(
        *(
            rig.publish_raw(
                broker,
                b'{"n": %d}' % i,
                message_id=f"m{i}",
                type="quarantine.requested",
                correlation_id="c1",
                headers={"traceparent": "00-abc-def-01", "n": i},
                user_id="guest",
                app_id="tests",
                timestamp=sent_at,
            )
            for i in range(20)
        )
    )
    await until(lambda: len(got) == 20)
    first = next(m for m in got if m.message_id == "m0")
    assert first.body == b'{"n": 0}'
    assert first.type == "quarantine.requested"
    assert first.routing_key == "quarantine.requested"
    assert first.headers["traceparent"] == "00-abc-def-01"
    assert first.timestamp == sent_at
    assert (first.correlation_id, first.user_id, first.app_id) == ("c1", "guest", "tests")
    assert sorted(m.message_id or "" for m in got) == sorted(f"m{i}" for i in range(20))
    await until(lambda: all(m.settled for m in got))
    assert await broker.queue_depth(topology.work_queue) == 0


async def test_mandatory_unroutable_publish_raises_delivery_error(rig: Rig) -> None:
    """A mandatory publish nobody can route is returned and raised; the broker keeps working."""
    broker = await rig.broker()
    topology = await rig.declare(broker, ["quarantine.requested"])
    with pytest.raises(DeliveryError, match="NO_ROUTE"):
        await broker.publish(
            OutgoingMessage(b"x", routing_key=f"no-such-queue-{uuid.uuid4().hex}", exchange="")
        )
    with pytest.raises(DeliveryError, match="no exchange"):
        await broker.publish(OutgoingMessage(b"x", routing_key="k", exchange=f"nope-{rig.worker}"))
    await broker.publish(OutgoingMessage(b"ok", routing_key=topology.work_queue, exchange=""))
    assert await broker.queue_depth(topology.work_queue) == 1
    failures = "eventguard_publish_failures_total"
    assert rig.sample(failures, {"worker": broker.name, "reason": "returned"}) == 1


async def test_events_without_subscriber_go_to_the_alternate_exchange(rig: Rig) -> None:
    """An event type no queue binds is kept in the unrouted queue, not returned."""
    broker = await rig.broker()
    await rig.declare(broker, ["quarantine.requested"])
    await rig.publish_raw(broker, b"{}", routing_key="health.heartbeat")
    unrouted = rig.names()["eventguard.unrouted"]
    assert await broker.queue_depth(unrouted) == 1


async def test_delivery_count_header_surfaces_as_is(rig: Rig) -> None:
    """A requeued delivery comes back with the quorum queue's x-delivery-count header."""
    broker = await rig.broker()
    topology = await rig.declare(broker, ["quarantine.requested"])
    seen: list[IncomingMessage] = []

    async def handler(message: IncomingMessage) -> None:
        seen.append(message)
        if len(seen) == 1:
            await message.reject(requeue=True)
        else:
            await message.ack()

    await broker.consume(topology.work_queue, handler, prefetch=1)
    await rig.publish_raw(broker, b"{}")
    await until(lambda: len(seen) == 2)
    assert "x-delivery-count" not in seen[0].headers
    assert seen[1].headers["x-delivery-count"] == 1
    assert seen[1].redelivered


async def test_server_cancelled_consumer_is_recovered(rig: Rig) -> None:
    """Deleting the queue under a consumer: the broker re-declares it and consumes again."""
    broker = await rig.broker()
    topology = await rig.declare(broker, ["quarantine.requested"])
    got: list[bytes] = []

    async def handler(message: IncomingMessage) -> None:
        got.append(message.body)
        await message.ack()

    await broker.consume(topology.work_queue, handler, prefetch=5)
    async with aiormq.connect(
        rig.rabbit_url, client_properties={"connection_name": f"eventguard-test.{rig.worker}.op"}
    ) as conn:
        channel = await conn.channel()
        await channel.queue_delete(topology.work_queue)
    await until(lambda: broker.active_consumers(topology.work_queue) == 0, within=5)
    await until(lambda: broker.active_consumers(topology.work_queue) == 1, within=5)
    await broker.publish(OutgoingMessage(b"after", routing_key=topology.work_queue, exchange=""))
    await until(lambda: got == [b"after"])
    assert rig.sample("eventguard_active_consumers", {"queue": topology.work_queue}) == 1


async def test_declare_is_idempotent_and_a_mismatch_is_a_config_error(rig: Rig) -> None:
    """Declaring twice is harmless; a queue redeclared with other arguments stops start-up."""
    broker = await rig.broker()
    topology = await rig.declare(broker, ["quarantine.requested"])
    await broker.declare(topology)
    clash = Topology(
        exchanges=(),
        queues=(QueueSpec(topology.work_queue, {"x-queue-type": "classic"}),),
    )
    with pytest.raises(ConfigError, match="differs"):
        await broker.declare(clash)
    await broker.publish(OutgoingMessage(b"ok", routing_key=topology.work_queue, exchange=""))


async def test_cancel_keeps_in_flight_deliveries_settleable(rig: Rig) -> None:
    """After cancel, a delivery still being handled can be acked; nothing is redelivered."""
    broker = await rig.broker()
    topology = await rig.declare(broker, ["quarantine.requested"])
    held: list[IncomingMessage] = []

    async def handler(message: IncomingMessage) -> None:
        held.append(message)

    tag = await broker.consume(topology.work_queue, handler, prefetch=1)
    await rig.publish_raw(broker, b"{}")
    await until(lambda: len(held) == 1)
    await broker.cancel(tag)
    assert broker.active_consumers(topology.work_queue) == 0
    await held[0].ack()
    assert rig.sample("eventguard_stale_acks_total", {"queue": topology.work_queue}) == 0
    await broker.close()  # an unacked delivery would now go back to the queue
    observer = await rig.broker("observer")
    assert await observer.queue_depth(topology.work_queue) == 0
