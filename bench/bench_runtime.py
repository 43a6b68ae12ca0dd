"""Runtime benchmark: consuming and publishing on the real RabbitMQ (and Redis), side by side.

Same run, same quorum queue type, the same 1 KiB JSON envelopes, the same prefetch:

consume (a queue pre-filled with N messages, timed from consume start to the N-th handled;
the peers live in bench/runtime_peers.py, every contender is one entry of CONTENDERS):
  raw              aio-pika, manual ack, the body validated with the same pydantic envelope model
  faststream       FastStream's RabbitBroker, a handler typed with that model, logging off
  taskiq           Taskiq's worker over taskiq-aio-pika, a task typed with that model
  eventguard       EventGuard's AmqpBroker + Pipeline, no idempotency
  eventguard_idem  the same with the Redis idempotency claim (claim, then done before the ack)
  eventguard_idem_traced(_10pct, _1pct)  the same, tracing on: every trace sampled (or one in
                   ten, one in a hundred: TraceIdRatioBased, each message a new trace), spans
                   encoded as the OTLP exporter would, then dropped (no network)

publish (N events through a topic exchange into a quorum queue, W in flight):
  raw         aio-pika, publisher confirms, mandatory, pipelined (each awaits its confirm)
  eventguard  EventGuard's Publisher over AmqpBroker (confirms, mandatory, persistent)

Both publishers serialise the pydantic envelope per message. A consumer starts 2 s after its
queue is filled (SETTLE_S: the broker finishes writing it first). Each scenario runs ROUNDS times,
the consumers in a rotating order; the best round gives the rates and ratios (as before), the
median and the spread ((max - min) / median) of the rounds stand beside it, and
``cpu_us_per_msg_<contender>`` is the median CPU time the process spent per message over the
timed window (steadier than rates on a shared machine). Writes bench/results/runtime.json.

    .venv/bin/python -m bench.bench_runtime [--messages N] [--prefetch P] [--rounds R]
        [--note TEXT]   (EVENTGUARD_BENCH_AMQP_URL / EVENTGUARD_BENCH_REDIS_URL pick the servers)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from pamqp import commands as spec
from prometheus_client import CollectorRegistry

from bench.bench_tracing import KEEP_EVERY_SPAN, EncodingExporter
from bench.runtime_peers import (
    AMQP_URL,
    EVENT_TYPE,
    Done,
    Window,
    consume_faststream,
    consume_raw,
    consume_taskiq,
    taskiq_bodies,
)
from common import telemetry
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

REDIS_URL = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
RESULTS = Path(__file__).parent / "results" / "runtime.json"
QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
# After a queue is filled, RabbitMQ goes on writing it (the quorum queue's log and segments) for
# a moment; on two cores that work would land in whichever contender's timed window comes next.
SETTLE_S = 2.0


def make_events(n: int, size: int = 1024) -> list[Envelope[QuarantineRequested]]:
    """``n`` distinct envelopes whose JSON is ``size`` bytes."""

    def event(reason: str) -> Envelope[QuarantineRequested]:
        data = QuarantineRequested(kind="ai_model", entity_id="m1", reason=reason, requested_by="b")
        return new_event(EVENT_TYPE, data, source="bench")

    pad = size - len(event("").model_dump_json())
    events = [event("x" * pad) for _ in range(n)]
    assert all(len(e.model_dump_json()) == size for e in events[:10])
    return events


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


async def consume_traced(queue: str, n: int, prefetch: int, ratio: float) -> Window:
    """The idempotent pipeline with tracing on, sampling ``ratio`` of the (new) traces."""
    sampler = TraceIdRatioBased(ratio)
    with telemetry.enabled(EncodingExporter(), sampler=sampler, max_queue_size=KEEP_EVERY_SPAN):
        return await consume_eventguard(queue, n, prefetch, idempotent=True)


async def consume_eventguard(queue: str, n: int, prefetch: int, *, idempotent: bool) -> Window:
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
    router.add(QuarantineRequested, handle)
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
    done.start()
    await broker.consume(queue, pipeline, prefetch=prefetch)
    window = await done.wait()
    await pipeline.drained()
    await broker.close()
    await forget_prefix(redis, prefix)
    await redis.aclose()
    return window


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


@dataclass(frozen=True)
class Contender:
    """One consumer in the race: its figures are ``consume_<name>_msg_per_s`` (best round),
    ``..._median``, ``..._spread`` and ``cpu_us_per_msg_<name>``. ``encode`` turns the events
    into the bodies it consumes (the envelope JSON unless it has a format of its own)."""

    name: str
    run: Callable[[str, int, int, Infra], Awaitable[Window]]
    encode: Callable[[list[Envelope[QuarantineRequested]]], list[bytes]] | None = None


CONTENDERS = [
    Contender("raw", lambda q, n, p, infra: consume_raw(q, n, p)),
    Contender("faststream", lambda q, n, p, infra: consume_faststream(q, n, p)),
    Contender(
        "taskiq",
        lambda q, n, p, infra: consume_taskiq(q, n, p, f"{infra.exchange}.taskiq"),
        taskiq_bodies,
    ),
    Contender("eventguard", lambda q, n, p, infra: consume_eventguard(q, n, p, idempotent=False)),
    Contender(
        "eventguard_idem", lambda q, n, p, infra: consume_eventguard(q, n, p, idempotent=True)
    ),
    Contender("eventguard_idem_traced", lambda q, n, p, infra: consume_traced(q, n, p, 1.0)),
    Contender("eventguard_idem_traced_10pct", lambda q, n, p, infra: consume_traced(q, n, p, 0.1)),
    Contender("eventguard_idem_traced_1pct", lambda q, n, p, infra: consume_traced(q, n, p, 0.01)),
]
# (key, numerator, denominator, target or None): ratios of the best rounds' rates.
RATIOS = [
    ("ratio_vs_raw", "consume_eventguard", "consume_raw", 0.85),
    ("ratio_idempotent_vs_raw", "consume_eventguard_idem", "consume_raw", 0.80),
    ("ratio_eventguard_vs_faststream", "consume_eventguard", "consume_faststream", 1.3),
    ("ratio_idempotent_vs_faststream", "consume_eventguard_idem", "consume_faststream", 1.35),
    ("ratio_idempotent_vs_taskiq", "consume_eventguard_idem", "consume_taskiq", None),
    ("ratio_traced_vs_untraced", "consume_eventguard_idem_traced", "consume_eventguard_idem", 0.9),
    (
        "ratio_traced_10pct_vs_untraced",
        "consume_eventguard_idem_traced_10pct",
        "consume_eventguard_idem",
        0.9,
    ),
    (
        "ratio_traced_1pct_vs_untraced",
        "consume_eventguard_idem_traced_1pct",
        "consume_eventguard_idem",
        0.9,
    ),
    ("ratio_publish_vs_raw", "publish_eventguard", "publish_raw", 0.9),
]


def _spread(rates: list[float]) -> float:
    """(max - min) / median of the rounds."""
    return round((max(rates) - min(rates)) / statistics.median(rates), 3)


async def main(messages: int, prefetch: int, rounds: int, window: int) -> dict[str, Any]:
    """Run every scenario ``rounds`` times (the contenders' order rotates each round, so none
    always runs first or last); return the figures."""
    events = make_events(messages)
    plain = [e.model_dump_json().encode() for e in events]
    bodies = {c.name: c.encode(events) if c.encode else plain for c in CONTENDERS}
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def record(name: str, elapsed: float, cpu_s: float | None = None) -> None:
        rates.setdefault(name, []).append(messages / elapsed)
        line = f"  {name:<26} {messages / elapsed:>9.0f} msg/s"
        if cpu_s is not None:
            cpu.setdefault(name, []).append(cpu_s / messages * 1e6)
            line += f"  {cpu_s / messages * 1e6:>6.0f} us CPU/msg"
        print(line)

    async with aiormq.connect(
        AMQP_URL, client_properties={"connection_name": "eventguard-bench.infra"}
    ) as conn:
        infra = Infra(conn, uuid.uuid4().hex[:6])
        try:
            for round_ in range(rounds):
                print(f"round {round_ + 1}/{rounds}")
                shift = round_ % len(CONTENDERS)
                for contender in CONTENDERS[shift:] + CONTENDERS[:shift]:
                    queue = await infra.queue(contender.name)
                    await infra.fill(queue, bodies[contender.name])
                    await asyncio.sleep(SETTLE_S)  # the broker's own writing of the fill
                    run = await contender.run(queue, messages, prefetch, infra)
                    record(f"consume_{contender.name}", run.elapsed, run.cpu_s)
                    await infra.drop(queue)
                record("publish_raw", await publish_raw(infra, events, window))
                record("publish_eventguard", await publish_eventguard(infra, events, window))
        finally:
            await infra.cleanup()
    best = {name: max(values) for name, values in rates.items()}
    figures: dict[str, Any] = {
        "messages": messages,
        "body_bytes": len(plain[0]),
        "prefetch": prefetch,
        "publish_window": window,
        "rounds": rounds,
        "queue_type": "quorum",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **{f"{name}_msg_per_s": round(rate, 1) for name, rate in best.items()},
        **{f"{n}_msg_per_s_median": round(statistics.median(v), 1) for n, v in rates.items()},
        **{f"{name}_spread": _spread(values) for name, values in rates.items()},
        **{
            f"cpu_us_per_msg_{name.removeprefix('consume_')}": round(statistics.median(v), 1)
            for name, v in cpu.items()
        },
        **{key: round(best[a] / best[b], 3) for key, a, b, _ in RATIOS},
        "ratio_vs_faststream": round(
            min(best["consume_eventguard"], best["consume_eventguard_idem"])
            / best["consume_faststream"],
            3,
        ),
        "targets": {key: target for key, _, _, target in RATIOS if target is not None},
    }
    figures["targets"]["ratio_vs_faststream"] = 1.3
    return figures


def _report(figures: dict[str, Any]) -> None:
    print()
    for key, target in figures["targets"].items():
        value = figures[key]
        verdict = "ok" if value >= target else "BELOW TARGET"
        print(f"{key:<32} {value:>6.3f}  (target >= {target})  {verdict}")
    print(f"{'ratio_idempotent_vs_taskiq':<32} {figures['ratio_idempotent_vs_taskiq']:>6.3f}")
    for key, value in figures.items():
        if key.startswith("cpu_us_per_msg_"):
            print(f"{key:<32} {value:>6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--note", default="", help="kept in the JSON (e.g. the machine was shared)")
    args = parser.parse_args()
    figures = asyncio.run(main(args.messages, args.prefetch, args.rounds, args.window))
    _report(figures)
    if args.note:
        figures["note"] = args.note
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
