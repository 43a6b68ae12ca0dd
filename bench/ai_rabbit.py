"""The AI fallback worker over the real RabbitMQ and Redis, as deployed, for the benchmark.

One ``Runtime`` runs the worker on the AMQP broker (quorum queues, publisher confirms, the
Redis idempotency claim and outbox); a requester on its own connection sends each request with
``common.bus.rpc.request`` (direct reply-to) and waits for the answer. The worker's queues get
a name of their own (``eventguard.bench-ai-<hex>``) and are deleted afterwards, with the Redis
keys of the run. Set ``EVENTGUARD_BENCH_AMQP_URL`` (a vhost of your own on a shared broker) and
``EVENTGUARD_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
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

__all__ = ["AMQP_URL", "REDIS_URL", "rabbit_samples"]

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
