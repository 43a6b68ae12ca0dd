"""Dead letters nothing can parse are still recorded byte for byte, and none loops forever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from common.bus import headers as h
from common.bus.memory import MemoryBroker
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.publisher import Publisher
from common.bus.raw import RawPipeline
from common.bus.topology import (
    DEAD_DELIVERY_LIMIT,
    DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE,
    UNRECORDED_QUEUE,
    worker_topology,
)
from common.config import RuntimeSettings, Settings
from common.metrics import Metrics
from common.testing import run_workers
from tests.unit.quarantine.conftest import Clock, factories, settings, until

DEEP = b'{"a":' * 1_000 + b"1" + b"}" * 1_000

POISON_BODIES = {
    "deep": DEEP,
    "deep_list": b"[" * 100_000 + b"]" * 100_000,
    "not_utf8": b'{"id": "\xff\xfe", "type": "\xc3\x28"}',
    "huge": b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'"}',
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(POISON_BODIES))
async def test_unparseable_dead_letter_is_recorded_byte_for_byte(name: str) -> None:
    """Deep nesting, non-UTF-8, 5 MiB or empty: the record holds exactly the bytes sent."""
    body = POISON_BODIES[name]
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        await env.broker.publish(
            OutgoingMessage(
                body=body,
                routing_key="health.heartbeat",
                exchange=DEAD_LETTER_EXCHANGE,
                content_type=None,
                headers={h.REASON: "invalid_json"},
            )
        )
        repo = holder["quarantine"].repo

        async def recorded() -> list[dict[str, Any]]:
            _, rows = await repo.search(kind="message", reason="invalid_json")
            return list(rows)

        async with asyncio.timeout(5):
            while not await recorded():
                await asyncio.sleep(0.01)
        (row,) = await recorded()
        record = await repo.get(row["id"])
        assert record is not None
        assert record["body"] == body
        assert env.dead() == []


async def test_dead_queue_gives_up_after_its_delivery_limit() -> None:
    """A dead letter the recorder always fails on moves to eventguard.dead.unrecorded."""
    broker = MemoryBroker()
    await broker.start()
    await broker.declare(worker_topology(
            "w", [], Settings(runtime=RuntimeSettings(retry_delays_s=(), delivery_limit=5))
        ))
    metrics = Metrics(CollectorRegistry())
    attempts: list[bytes] = []

    async def always_fails(message: IncomingMessage) -> None:
        attempts.append(message.body)
        raise RuntimeError("a recorder bug")

    raw = RawPipeline(
        worker="quarantine",
        handler=always_fails,
        publisher=Publisher(broker, worker="quarantine", user_id=None, metrics=metrics),
        metrics=metrics,
        timeout_s=1,
        retry_pause_s=0,
    )
    await broker.consume(DEAD_QUEUE, raw, prefetch=1)
    await broker.publish(OutgoingMessage(b"poison", routing_key="x", exchange=DEAD_LETTER_EXCHANGE))
    await until(lambda: bool(broker.messages(UNRECORDED_QUEUE)))
    await broker.idle()
    assert [m.body for m in broker.messages(UNRECORDED_QUEUE)] == [b"poison"]
    assert broker.messages(DEAD_QUEUE) == []
    assert len(attempts) == DEAD_DELIVERY_LIMIT + 1
    await broker.close()
