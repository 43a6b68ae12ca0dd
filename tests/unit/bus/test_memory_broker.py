"""The in-memory broker keeps RabbitMQ's semantics that the runtime relies on."""

from __future__ import annotations

import asyncio

import pytest

from common.bus.memory import MemoryBroker
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import (
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    UNROUTED_QUEUE,
    topic_matches,
    worker_topology,
)
from common.config import RuntimeSettings, Settings
from common.errors import DeliveryError


def _message(key: str, exchange: str = EVENTS_EXCHANGE) -> OutgoingMessage:
    return OutgoingMessage(body=b"{}", routing_key=key, exchange=exchange, message_id=key)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("#", "x.y", True),
        ("*.b", "a.c", False),
        ("a.#.c", "a.b.d.c", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    """Topic patterns match as in AMQP: * one word, # zero or more."""
    assert topic_matches(pattern, key) is expected


async def _broker() -> MemoryBroker:
    broker = MemoryBroker()
    await broker.start()
    runtime = RuntimeSettings(retry_delays_s=(0.01,), delivery_limit=2)
    await broker.declare(worker_topology("w", ["a.b"], Settings(runtime=runtime)))
    return broker


async def test_unbound_types_go_to_the_alternate_exchange() -> None:
    """An event nobody subscribes to is kept in eventguard.unrouted, not dropped or refused."""
    broker = await _broker()
    await broker.publish(_message("nobody.listens"))
    assert [m.routing_key for m in broker.messages(UNROUTED_QUEUE)] == ["nobody.listens"]


async def test_mandatory_publish_to_missing_queue_fails() -> None:
    """A mandatory publish that no queue takes raises DeliveryError."""
    broker = await _broker()
    with pytest.raises(DeliveryError):
        await broker.publish(_message("no-such-queue", exchange=""))


async def test_delay_queue_dead_letters_back_to_work_queue() -> None:
    """A message in a retry tier returns to the work queue after its TTL."""
    broker = await _broker()
    await broker.publish(_message("eventguard.w.retry.10ms", exchange=""))
    assert await broker.queue_depth("eventguard.w") == 0
    async with asyncio.timeout(2):
        while await broker.queue_depth("eventguard.w") == 0:
            await asyncio.sleep(0.005)
    (back,) = broker.messages("eventguard.w")
    assert back.headers["x-death"][0]["reason"] == "expired"


async def test_delivery_limit_dead_letters_to_dead_queue() -> None:
    """Requeued past the delivery limit, a message is dead-lettered by the queue itself."""
    broker = await _broker()
    seen: list[int] = []

    async def requeue(message: IncomingMessage) -> None:
        seen.append(int(message.headers.get("x-delivery-count", 0)))
        await message.reject(requeue=True)

    await broker.consume("eventguard.w", requeue, prefetch=1)
    await broker.publish(_message("a.b"))
    async with asyncio.timeout(2):
        while not broker.messages(DEAD_QUEUE):
            await asyncio.sleep(0.005)
    assert seen == [0, 1, 2]
    (dead,) = broker.messages(DEAD_QUEUE)
    assert dead.headers["x-death"][0]["reason"] == "delivery_limit"


async def test_prefetch_bounds_unsettled_deliveries() -> None:
    """No more than prefetch deliveries are unsettled at once."""
    broker = await _broker()
    held: list[IncomingMessage] = []

    async def hold(message: IncomingMessage) -> None:
        held.append(message)

    await broker.consume("eventguard.w", hold, prefetch=2)
    for _ in range(5):
        await broker.publish(_message("a.b"))
    await asyncio.sleep(0)
    assert len(held) == 2
    await held[0].ack()
    await asyncio.sleep(0)
    assert len(held) == 3
