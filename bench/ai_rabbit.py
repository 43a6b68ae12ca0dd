"""The AI fallback worker over the real RabbitMQ and Redis, for the benchmark.

Two set-ups, each timed by a requester that sends one request at a time with
``common.bus.rpc.request`` (publisher confirms, direct reply-to) and waits for the answer:

* :func:`process_samples`, as deployed: ``eventguard run ai_fallback`` in a process of its own
  (quorum queues, confirms, the Redis idempotency claim and outbox, JSON logs at WARNING);
* :func:`rabbit_samples`: the same ``Runtime`` inside the benchmark's process (its queues named
  ``eventguard.bench-ai-<hex>``), sharing one event loop with the requester and the simulator.

:func:`floor_samples` times the broker alone. Queues and Redis keys of a run are deleted
afterwards. Set ``EVENTGUARD_BENCH_AMQP_URL`` (a vhost of your own on a shared broker: the
process set-up uses the fixed queue ``eventguard.ai_fallback``) and ``EVENTGUARD_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
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
from common.config.sections import RuntimeSettings
from common.metrics import Metrics
from common.runtime import Runtime
from common.store import Store, connect_redis
from common.testing import forget_prefix
from schemas.ai import CompletionRequested
from schemas.envelope import new_event
from workers.ai_fallback import create as create_ai

__all__ = ["AMQP_URL", "REDIS_URL", "floor_samples", "process_samples", "rabbit_samples"]

AMQP_URL = os.environ.get("EVENTGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

_ROOT = Path(__file__).resolve().parent.parent
Timed = Callable[[int, Callable[[int], Awaitable[Any]]], Awaitable[list[float]]]


def _broker(metrics: Metrics, name: str) -> AmqpBroker:
    return AmqpBroker(AMQP_URL, metrics=metrics, name=name, publish_timeout_s=10)


async def _delete_queues(worker: str, delays: tuple[float, ...]) -> None:
    names = [work_queue_name(worker)]
    names += [retry_queue_name(worker, d) for d in delays]
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
        await _delete_queues(worker, settings.runtime.retry_delays_s)
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

        consumer = ""
        try:
            consumer = (await serving.basic_consume(queue, respond)).consumer_tag or ""
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
            if consumer:
                await serving.basic_cancel(consumer)
            cleanup = await server.channel()
            await cleanup.queue_delete(queue)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_env(settings: Settings, prefix: str) -> dict[str, str]:
    section = settings.ai_fallback
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGUARD_")}
    env.update(
        {
            "EVENTGUARD_BROKER_URL": AMQP_URL,
            "EVENTGUARD_REDIS_URL": REDIS_URL,
            "EVENTGUARD_REDIS_KEY_PREFIX": prefix,
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS": json.dumps(["guest"]),
            "EVENTGUARD_LOG_LEVEL": "WARNING",
            "EVENTGUARD_LOG_FORMAT": "json",
            "EVENTGUARD_OPS_PORT": "0",
            "EVENTGUARD_AI_FALLBACK__MODELS": json.dumps(
                [m.model_dump(mode="json") for m in section.models]
            ),
            "EVENTGUARD_AI_FALLBACK__PROVIDER_KEYS": json.dumps(
                {k: v.get_secret_value() for k, v in section.provider_keys.items()}
            ),
            "EVENTGUARD_AI_FALLBACK__BREAKER_OPEN_S": str(section.breaker_open_s),
        }
    )
    return env


async def _until_consuming(queue: str) -> None:
    async with aiormq.connect(AMQP_URL) as conn, asyncio.timeout(120):
        channel = await conn.channel()
        while True:
            with contextlib.suppress(aiormq.exceptions.ChannelNotFoundEntity):
                declared = await channel.queue_declare(queue, passive=True)
                if declared.consumer_count:
                    return
            if channel.is_closed:
                channel = await conn.channel()
            await asyncio.sleep(0.2)


async def process_samples(
    settings: Settings,
    make_request: Callable[[int], CompletionRequested],
    *,
    warmup: int,
    n: int,
    timed: Timed,
) -> tuple[list[float], float]:
    """Seconds per request/reply through ``eventguard run ai_fallback`` in its own process, and
    the worker process's CPU milliseconds per request (user + system)."""
    prefix = f"bench-ai-proc-{uuid.uuid4().hex[:6]}:"
    process = subprocess.Popen(  # noqa: ASYNC220 - our own CLI; started before timing
        [sys.executable, "-m", "eventguard.cli", "run", "ai_fallback"],
        env=_worker_env(settings, prefix),
        cwd=_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = Metrics(CollectorRegistry())
    requester = _broker(metrics, "eventguard-bench.ai-process.requester")
    redis = connect_redis(REDIS_URL)
    try:
        await _until_consuming(work_queue_name("ai_fallback"))
        await requester.start()
        publisher = Publisher(requester, worker="bench", user_id="guest", metrics=metrics)

        async def one(i: int) -> None:
            event = new_event("ai.completion.requested", make_request(i), source="bench")
            answer = await request(publisher, event, timeout_s=30)
            assert answer.type == "ai.completion.succeeded", answer

        await timed(warmup, one)
        cpu_before = _cpu_s(process.pid)
        samples = await timed(n, one)
        return samples, (_cpu_s(process.pid) - cpu_before) * 1000 / n
    finally:
        await requester.close()
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        await _delete_queues("ai_fallback", RuntimeSettings().retry_delays_s)  # its defaults
        await forget_prefix(redis, prefix)
        await redis.aclose()
