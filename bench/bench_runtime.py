"""Runtime benchmark: consuming and publishing on the real RabbitMQ (and Redis), side by side.

Same run, same quorum queue type, the same 1 KiB JSON envelopes, the same prefetch:

consume (a queue pre-filled with N messages, timed from consume start to the N-th handled):
  raw         aio-pika, manual ack, the body validated with the same pydantic envelope model
  faststream  FastStream's RabbitBroker, a handler typed with that model, logging off
  eventguard  EventGuard's AmqpBroker + Pipeline, no idempotency
  eg_idem     the same with the Redis idempotency claim (claim + done: two round trips)

publish (N events through a topic exchange into a quorum queue, W in flight):
  raw         aio-pika, publisher confirms, mandatory, pipelined (each awaits its confirm)
  eventguard  EventGuard's Publisher over AmqpBroker (confirms, mandatory, persistent)

Both publishers serialise the pydantic envelope per message. Each scenario runs ROUNDS times,
alternating, and the best round counts. Writes bench/results/runtime.json.

    .venv/bin/python bench/bench_runtime.py [--messages N] [--prefetch P] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue
from pamqp import commands as spec
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.bus.idempotency import Idempotency
from common.bus.pipeline import Pipeline, allow_all
from common.bus.publisher import Publisher
from common.bus.router import Emit, Router
from common.config.sections import RuntimeSettings
from common.metrics import Metrics
from common.store import Store, connect_redis
from common.testing import forget_prefix
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested
from schemas.registry import envelope_model, payload_model

AMQP_URL = os.environ.get("EVENTGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
EVENT_TYPE = "quarantine.requested"
RESULTS = Path(__file__).parent / "results" / "runtime.json"
QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
Model = envelope_model(EVENT_TYPE)


def make_events(n: int, size: int = 1024) -> list[Envelope[QuarantineRequested]]:
    """``n`` distinct envelopes whose JSON is ``size`` bytes."""

    def event(reason: str) -> Envelope[QuarantineRequested]:
        data = QuarantineRequested(kind="ai_model", entity_id="m1", reason=reason, requested_by="b")
        return new_event(EVENT_TYPE, data, source="bench")

    pad = size - len(event("").model_dump_json())
    events = [event("x" * pad) for _ in range(n)]
    assert all(len(e.model_dump_json()) == size for e in events[:10])
    return events


class Done:
    """Counts handled messages; resolves when ``target`` is reached."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.event = asyncio.Event()

    def hit(self) -> None:
        """One more handled."""
        self.count += 1
        if self.count >= self.target:
            self.event.set()


class Infra:
    """Declares, fills and deletes the benchmark's queues over one aiormq connection."""

    def __init__(self, conn: aiormq.abc.AbstractConnection, tag: str) -> None:
        self.conn = conn
        self.tag = tag
        self.queues: list[str] = []
        self.exchange = f"eventguard.bench-{tag}.events"

    async def queue(self, scenario: str, *, bind: bool = False) -> str:
        """A fresh quorum queue (bound to the bench exchange by the event type if ``bind``)."""
        name = f"eventguard.bench-{self.tag}.{scenario}.{uuid.uuid4().hex[:6]}"
        channel = await self.conn.channel()
        await channel.queue_declare(name, durable=True, arguments=QUORUM)
        if bind:
            await channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            await channel.queue_bind(name, self.exchange, routing_key=EVENT_TYPE)
        await channel.close()
        self.queues.append(name)
        return name

    async def fill(self, queue: str, bodies: list[bytes], window: int = 500) -> None:
        """Publish ``bodies`` to ``queue`` with confirms (not timed), through an exchange with
        the event type as routing key, as the wire contract wants (one queue bound at a time)."""
        channel = await self.conn.channel(publisher_confirms=True)
        fill_x = f"{self.exchange}.fill"
        await channel.exchange_declare(fill_x, exchange_type="direct", durable=False)
        await channel.queue_bind(queue, fill_x, routing_key=EVENT_TYPE)
        props = spec.Basic.Properties(
            delivery_mode=2, message_type=EVENT_TYPE, content_type="application/json"
        )
        for start in range(0, len(bodies), window):
            await asyncio.gather(
                *(
                    channel.basic_publish(
                        body, exchange=fill_x, routing_key=EVENT_TYPE, properties=props
                    )
                    for body in bodies[start : start + window]
                )
            )
        await channel.close()

    async def drop(self, queue: str) -> None:
        """Delete one queue now (a bound one would otherwise multiply later publishes)."""
        channel = await self.conn.channel()
        await channel.queue_delete(queue)
        await channel.close()
        self.queues.remove(queue)

    async def cleanup(self) -> None:
        """Delete every queue and the exchange."""
        channel = await self.conn.channel()
        for name in self.queues:
            await channel.queue_delete(name)
        await channel.exchange_delete(self.exchange)
        await channel.exchange_delete(f"{self.exchange}.fill")
        await channel.close()


async def consume_raw(queue: str, n: int, prefetch: int) -> float:
    """aio-pika consumer: validate with pydantic, ack."""
    done = Done(n)
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    amqp_queue = await channel.get_queue(queue, ensure=False)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        Model.model_validate_json(message.body)
        await message.ack()
        done.hit()

    started = time.perf_counter()
    await amqp_queue.consume(on_message)
    await done.event.wait()
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


async def consume_faststream(queue: str, n: int, prefetch: int) -> float:
    """FastStream subscriber typed with the envelope model, logging off."""
    done = Done(n)
    broker = RabbitBroker(AMQP_URL, logger=None)

    @broker.subscriber(
        RabbitQueue(queue, queue_type=QueueType.QUORUM, durable=True, declare=False),
        channel=Channel(prefetch_count=prefetch),
    )
    async def handle(body: Envelope[QuarantineRequested]) -> None:
        done.hit()

    started = time.perf_counter()
    await broker.start()
    await done.event.wait()
    elapsed = time.perf_counter() - started
    await broker.stop()
    return elapsed


async def consume_eventguard(queue: str, n: int, prefetch: int, *, idempotent: bool) -> float:
    """EventGuard's broker and pipeline, with or without the Redis claim."""
    done = Done(n)
    metrics = Metrics(CollectorRegistry())
    broker = AmqpBroker(AMQP_URL, metrics=metrics, name="eventguard-bench")
    await broker.start()
    redis = connect_redis(REDIS_URL)
    prefix = f"egbench:{uuid.uuid4().hex[:8]}:"
    settings = RuntimeSettings(prefetch=prefetch)

    async def handle(event: Envelope[Any]) -> Emit:
        done.hit()
        return []

    router = Router()
    router.add(payload_model(EVENT_TYPE), handle)
    idempotency = (
        Idempotency(Store(redis, prefix=prefix), worker="bench", lease_s=30, done_ttl_s=600)
        if idempotent
        else None
    )
    pipeline = Pipeline(
        worker="bench",
        router=router,
        broker=broker,
        publisher=Publisher(broker, worker="bench", user_id=None, metrics=metrics),
        idempotency=idempotency,
        settings=settings,
        metrics=metrics,
        authorize=allow_all,
        retry_queues={},
    )
    started = time.perf_counter()
    await broker.consume(queue, pipeline, prefetch=prefetch)
    await done.event.wait()
    elapsed = time.perf_counter() - started
    await pipeline.drained()
    await broker.close()
    await forget_prefix(redis, prefix)
    await redis.aclose()
    return elapsed


async def _windowed(n: int, window: int, publish_one: Callable[[int], Awaitable[None]]) -> None:
    async def lane(offset: int) -> None:
        for i in range(offset, n, window):
            await publish_one(i)

    await asyncio.gather(*(lane(k) for k in range(window)))


async def publish_raw(
    infra: Infra, events: list[Envelope[QuarantineRequested]], window: int
) -> float:
    """aio-pika with publisher confirms, mandatory, persistent; ``window`` in flight."""
    queue = await infra.queue("publish-raw", bind=True)
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(infra.exchange, ensure=False)

    async def publish_one(i: int) -> None:
        event = events[i]
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            message_id=event.id,
            type=event.type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            timestamp=event.time,
            app_id=event.source,
            correlation_id=event.correlation_id,
        )
        await exchange.publish(message, routing_key=event.type, mandatory=True)

    started = time.perf_counter()
    await _windowed(len(events), window, publish_one)
    elapsed = time.perf_counter() - started
    await connection.close()
    await infra.drop(queue)
    return elapsed


async def publish_eventguard(
    infra: Infra, events: list[Envelope[QuarantineRequested]], window: int
) -> float:
    """EventGuard's Publisher over AmqpBroker; ``window`` in flight."""
    queue = await infra.queue("publish-eg", bind=True)
    metrics = Metrics(CollectorRegistry())
    broker = AmqpBroker(AMQP_URL, metrics=metrics, name="eventguard-bench")
    await broker.start()
    publisher = Publisher(
        broker, worker="bench", user_id=None, metrics=metrics, exchange=infra.exchange
    )

    async def publish_one(i: int) -> None:
        await publisher.publish(events[i])

    started = time.perf_counter()
    await _windowed(len(events), window, publish_one)
    elapsed = time.perf_counter() - started
    await broker.close()
    await infra.drop(queue)
    return elapsed


async def main(messages: int, prefetch: int, rounds: int, window: int) -> dict[str, Any]:
    """Run every scenario ``rounds`` times; return the figures."""
    events = make_events(messages)
    bodies = [e.model_dump_json().encode() for e in events]
    best: dict[str, float] = {}

    def record(name: str, elapsed: float) -> None:
        rate = messages / elapsed
        best[name] = max(best.get(name, 0.0), rate)
        print(f"  {name:<22} {rate:>9.0f} msg/s")

    consumers: dict[str, Callable[[str], Awaitable[float]]] = {
        "consume_raw": lambda q: consume_raw(q, messages, prefetch),
        "consume_faststream": lambda q: consume_faststream(q, messages, prefetch),
        "consume_eventguard": lambda q: consume_eventguard(q, messages, prefetch, idempotent=False),
        "consume_eventguard_idem": lambda q: consume_eventguard(
            q, messages, prefetch, idempotent=True
        ),
    }
    async with aiormq.connect(
        AMQP_URL, client_properties={"connection_name": "eventguard-bench.infra"}
    ) as conn:
        infra = Infra(conn, uuid.uuid4().hex[:6])
        try:
            for round_ in range(1, rounds + 1):
                print(f"round {round_}/{rounds}")
                for name, run in consumers.items():
                    queue = await infra.queue(name)
                    await infra.fill(queue, bodies)
                    record(name, await run(queue))
                    await infra.drop(queue)
                record("publish_raw", await publish_raw(infra, events, window))
                record("publish_eventguard", await publish_eventguard(infra, events, window))
        finally:
            await infra.cleanup()
    raw, fast = best["consume_raw"], best["consume_faststream"]
    eg, eg_idem = best["consume_eventguard"], best["consume_eventguard_idem"]
    return {
        "messages": messages,
        "body_bytes": len(bodies[0]),
        "prefetch": prefetch,
        "publish_window": window,
        "rounds": rounds,
        "queue_type": "quorum",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **{f"{name}_msg_per_s": round(rate, 1) for name, rate in best.items()},
        "ratio_vs_raw": round(eg / raw, 3),
        "ratio_idempotent_vs_raw": round(eg_idem / raw, 3),
        "ratio_vs_faststream": round(min(eg, eg_idem) / fast, 3),
        "ratio_eventguard_vs_faststream": round(eg / fast, 3),
        "ratio_idempotent_vs_faststream": round(eg_idem / fast, 3),
        "ratio_publish_vs_raw": round(best["publish_eventguard"] / best["publish_raw"], 3),
        "targets": {
            "ratio_vs_raw": 0.85,
            "ratio_idempotent_vs_raw": 0.70,
            "ratio_vs_faststream": 1.3,
            "ratio_publish_vs_raw": 0.9,
        },
    }


def _report(figures: dict[str, Any]) -> None:
    print()
    for key, target in figures["targets"].items():
        value = figures[key]
        verdict = "ok" if value >= target else "BELOW TARGET"
        print(f"{key:<26} {value:>6.3f}  (target >= {target})  {verdict}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()
    figures = asyncio.run(main(args.messages, args.prefetch, args.rounds, args.window))
    _report(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
