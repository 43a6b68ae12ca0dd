"""The AI fallback worker over the real RabbitMQ and Redis, as deployed, for the benchmark.

One ``Runtime`` runs the worker on the AMQP broker (quorum queues, publisher confirms, the
Redis idempotency claim and outbox); a requester on its own connection sends each request with
``common.bus.rpc.request`` (direct reply-to) and waits for the answer. The worker's queues get
a name of their own (``eventguard.bench-ai-<hex>``) and are deleted afterwards, with the Redis
keys of the run. Set ``EVENTGUARD_BENCH_AMQP_URL`` (a vhost of your own on a shared broker) and
``EVENTGUARD_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.bus.pipeline import allow_all
from common.bus.publisher import Publisher
from common.bus.rpc import request
from common.bus.topology import retry_queue_name, work_queue_name
from common.config import Settings
from common.metrics import Metrics
from common.runtime import Runtime
from common.store import Store, connect_redis
from common.testing import forget_prefix
from schemas.ai import CompletionRequested
from schemas.envelope import new_event
from workers.ai_fallback import create as create_ai

__all__ = ["AMQP_URL", "REDIS_URL", "floor_samples", "rabbit_samples"]

AMQP_URL = os.environ.get("EVENTGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

Timed = Callable[[int, Callable[[int], Awaitable[Any]]], Awaitable[list[float]]]


def _broker(metrics: Metrics, name: str) -> AmqpBroker:
    return AmqpBroker(AMQP_URL, metrics=metrics, name=name, publish_timeout_s=10)


async def _delete_queues(worker: str, settings: Settings) -> None:
    names = [work_queue_name(worker)]
    names += [retry_queue_name(worker, d) for d in settings.runtime.retry_delays_s]
    async with aiormq.connect(AMQP_URL) as conn:
        channel = await conn.channel()
        for name in names:
            await channel.queue_delete(name)


async def rabbit_samples(
    settings: Settings,
    make_request: Callable[[int], CompletionRequested],
    *,
    warmup: int,
    n: int,
    timed: Timed,
) -> list[float]:
    """Seconds per request/reply through the worker over RabbitMQ, ``n`` sequential requests."""
    worker = f"bench-ai-{uuid.uuid4().hex[:6]}"
    prefix = f"{worker}:"
    metrics = Metrics(CollectorRegistry())
    redis = connect_redis(REDIS_URL)
    settings = settings.model_copy(update={"redis_key_prefix": prefix})
    runtime = Runtime(
        settings=settings,
        factories=[(worker, create_ai)],
        broker=_broker(metrics, f"eventguard-bench.{worker}.worker"),
        store=Store(redis, prefix=prefix),
        metrics=metrics,
        authorize=allow_all,
    )
    requester = _broker(metrics, f"eventguard-bench.{worker}.requester")
    try:
        async with runtime.lifespan():
            await requester.start()
            publisher = Publisher(requester, worker="bench", user_id=None, metrics=metrics)

            async def one(i: int) -> None:
                event = new_event("ai.completion.requested", make_request(i), source="bench")
                answer = await request(publisher, event, timeout_s=30)
                assert answer.type == "ai.completion.succeeded", answer

            await timed(warmup, one)
            return await timed(n, one)
    finally:
        await requester.close()
        await _delete_queues(worker, settings)
        await forget_prefix(redis, prefix)
        await redis.aclose()


async def floor_samples(*, warmup: int, n: int, timed: Timed) -> list[float]:
    """Seconds per round trip of the broker alone: a persistent request to a quorum queue and a
    direct reply-to answer, both confirmed, answered by a bare aiormq consumer (no Redis, no
    handler): what any worker over this broker pays before doing anything."""
    queue = f"eventguard.bench-floor-{uuid.uuid4().hex[:6]}"
    pending: dict[str, asyncio.Future[bytes]] = {}
    async with aiormq.connect(AMQP_URL) as server, aiormq.connect(AMQP_URL) as client:
        serving = await server.channel(publisher_confirms=True)
        await serving.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        await serving.basic_qos(prefetch_count=32)

        async def respond(message: DeliveredMessage) -> None:
            props = message.header.properties
            await serving.basic_publish(
                message.body,
                routing_key=props.reply_to or "",
                properties=Basic.Properties(correlation_id=props.correlation_id, delivery_mode=2),
            )
            await serving.basic_ack(message.delivery_tag or 0)

        async def on_reply(message: DeliveredMessage) -> None:
            future = pending.pop(message.header.properties.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(message.body)

        try:
            await serving.basic_consume(queue, respond)
            asking = await client.channel(publisher_confirms=True)
            await asking.basic_consume("amq.rabbitmq.reply-to", on_reply, no_ack=True)
            body = b"x" * 700  # about the size of a completion request event

            async def one(_i: int) -> None:
                correlation = uuid.uuid4().hex
                future = asyncio.get_running_loop().create_future()
                pending[correlation] = future
                await asking.basic_publish(
                    body,
                    routing_key=queue,
                    properties=Basic.Properties(
                        reply_to="amq.rabbitmq.reply-to",
                        correlation_id=correlation,
                        delivery_mode=2,
                    ),
                )
                await asyncio.wait_for(future, 30)

            await timed(warmup, one)
            return await timed(n, one)
        finally:
            cleanup = await server.channel()
            await cleanup.queue_delete(queue)
