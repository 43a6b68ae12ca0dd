"""Per-replica queues on the real RabbitMQ: every replica gets its copy, even after a reconnect."""

from __future__ import annotations

import aiormq

from common.bus.message import IncomingMessage
from common.bus.topology import Topology, replica_queue_spec
from schemas.envelope import new_event
from schemas.quarantine import QuarantineEntryAdded
from tests.integration.bus.conftest import Rig, close_connections_of, until


def _added(n: int) -> QuarantineEntryAdded:
    return QuarantineEntryAdded(
        record_id=f"r{n}",
        kind="ai_model",
        entity_id="m",
        reason="r",
        severity="critical",
        expires_at=None,
    )


async def test_each_replica_gets_every_broadcast_event_and_keeps_getting_them(rig: Rig) -> None:
    """Two replicas, each with its own exclusive queue: both receive an event; one loses its
    connection (its queue goes with it), comes back with the queue re-declared, and receives
    the next event too. When a replica stops, its queue is gone."""
    await rig.declare(await rig.broker("setup"), ["quarantine.requested"])
    received: dict[str, list[str]] = {"a": [], "b": []}
    brokers = {}
    for name in ("a", "b"):
        broker = await rig.broker(name)
        spec = replica_queue_spec(
            rig.worker, name, "t0", ["quarantine.entry.added"], exchange=rig.events
        )
        # The rig declared its own (renamed) exchanges; only the queue is new here.
        await broker.declare(Topology(exchanges=(), queues=(spec,)))

        async def collect(message: IncomingMessage, name: str = name) -> None:
            received[name].append(message.message_id or "")
            await message.ack()

        await broker.consume(spec.name, collect, prefetch=10)
        brokers[name] = (broker, spec.name)
    publisher = rig.publisher(brokers["a"][0])
    first = new_event("quarantine.entry.added", _added(1), source="it")
    await publisher.publish(first)
    await until(lambda: received["a"] == [first.id] and received["b"] == [first.id])
    b_broker, b_queue = brokers["b"]
    assert await close_connections_of(f"{b_broker.name}.consume") == 1
    await until(lambda: b_broker.active_consumers(b_queue) == 0, within=5)
    await until(lambda: b_broker.active_consumers(b_queue) == 1, within=10)
    second = new_event("quarantine.entry.added", _added(2), source="it")
    await publisher.publish(second)
    both = [first.id, second.id]  # each replica consumes on its own: wait for both copies
    await until(lambda: received["a"] == both and received["b"] == both)
    await b_broker.close()
    async with aiormq.connect(rig.rabbit_url) as conn:
        channel = await conn.channel()
        try:
            await channel.queue_declare(b_queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            gone = True
        else:
            gone = False
    assert gone
