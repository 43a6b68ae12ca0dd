"""Connections closed from the server side: consumers come back and nothing is lost."""

from __future__ import annotations

import asyncio

from common.bus.router import Emit, Router
from common.errors import DeliveryError
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested
from tests.integration.bus.conftest import Rig, close_connections_of, until


def _request(n: int) -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id=f"m{n}", reason="ok", requested_by="t")


async def test_server_closes_connections_mid_stream_nothing_lost(rig: Rig) -> None:
    """Both connections are killed mid-stream; they reconnect, consumers re-register, and
    every event is handled exactly once."""
    broker = await rig.broker()
    handled: list[str] = []

    async def handler(event: Envelope[QuarantineRequested]) -> Emit:
        handled.append(event.id)
        await asyncio.sleep(0.002)
        return []

    router = Router()
    router.add(QuarantineRequested, handler)
    await rig.pipeline(broker, router)
    publisher = rig.publisher(broker)
    events = [new_event("quarantine.requested", _request(n), source="it") for n in range(300)]

    async def produce() -> None:
        for event in events:
            while True:  # a producer retries what the broker did not confirm
                try:
                    await publisher.publish(event)
                    break
                except DeliveryError:
                    await asyncio.sleep(0.05)

    producer = asyncio.create_task(produce())
    await until(lambda: len(handled) >= 50)
    closed = await close_connections_of(f"{broker.name}.")
    assert closed == 2
    await producer
    wanted = {e.id for e in events}
    await until(lambda: wanted <= set(handled), within=20)
    assert len(set(handled)) == len(events)
    assert sorted(handled) == sorted(set(handled))  # the Redis claim kept redeliveries out
    await until(lambda: broker.connected and broker.active_consumers(rig.work_queue) == 1)
    assert rig.sample("eventguard_active_consumers", {"queue": rig.work_queue}) == 1
    assert rig.sample("eventguard_broker_reconnects_total") == 2
    assert rig.sample("eventguard_broker_connected") == 1
    assert rig.dead == []


async def test_ack_from_a_dead_channel_is_dropped_counted_and_redelivered(rig: Rig) -> None:
    """A handler finishing after its connection died: the ack is stale (counted, not retried),
    the broker redelivers and the idempotency claim acks the copy without running it again."""
    broker = await rig.broker()
    release = asyncio.Event()
    calls: list[str] = []

    async def handler(event: Envelope[QuarantineRequested]) -> Emit:
        calls.append(event.id)
        await release.wait()
        return []

    router = Router()
    router.add(QuarantineRequested, handler)
    await rig.pipeline(broker, router)
    event = new_event("quarantine.requested", _request(1), source="it")
    await rig.publisher(broker).publish(event)
    await until(lambda: calls == [event.id])
    assert await close_connections_of(f"{broker.name}.consume") == 1
    await until(lambda: not broker.connected, within=5)
    release.set()
    await until(lambda: rig.sample("eventguard_stale_acks_total", {"queue": rig.work_queue}) == 1)
    await until(lambda: rig.count("duplicate") == 1)
    assert calls == [event.id]
    assert broker.active_consumers(rig.work_queue) == 1
