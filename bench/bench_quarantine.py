"""Benchmark the quarantine worker on the real RabbitMQ and Redis.

Figures, measured in one run on the same broker, Redis and prefetch:

* ``consume_per_s``: the runtime's plain consume rate: valid events pre-loaded in a queue,
  consumed by the real pipeline (decode, validate, idempotency claim and done in Redis) with a
  handler that does nothing;
* ``record_per_s``: dead messages pre-loaded in a dead queue, consumed by the raw pipeline
  with the quarantine worker's ``on_dead`` (record + indexes + flood counters in one Lua step,
  ``quarantine.entry.added`` published with a confirm, then ack);
* ``ratio_record_vs_consume`` (target >= 0.5);
* ``list_latency_ms_100k``: p50 of one page (50 rows, newest first) with 100,000 records in
  Redis, over several filters and offsets (p99 alongside).

Writes ``bench/results/quarantine.json``. Run: ``.venv/bin/python -m bench.bench_quarantine``
(EVENTGUARD_BENCH_AMQP_URL / EVENTGUARD_BENCH_REDIS_URL override the local servers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiormq
from prometheus_client import CollectorRegistry

from common.bus import headers as h
from common.bus.amqp import AmqpBroker
from common.bus.idempotency import Idempotency
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.pipeline import Pipeline, allow_all
from common.bus.publisher import Publisher, to_message
from common.bus.raw import RawPipeline
from common.bus.router import Emit, Router
from common.bus.topology import ExchangeSpec, QueueSpec, Topology
from common.config import RuntimeSettings, Settings
from common.logging import configure_logging
from common.metrics import Metrics
from common.service import WorkerContext
from common.store import Store, connect_redis
from schemas.envelope import Envelope, new_event
from schemas.marketplace import StrategyRevoked
from schemas.registry import payload_model
from workers.quarantine import QuarantineService
from workers.quarantine.records import DeadMessage

RESULTS = Path(__file__).parent / "results" / "quarantine.json"
TYPE = "marketplace.strategy.revoked"
PREFETCH = 32


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _preload(broker: AmqpBroker, messages: list[OutgoingMessage]) -> None:
    for start in range(0, len(messages), 500):
        await asyncio.gather(*(broker.publish(m) for m in messages[start : start + 500]))


async def _drain(
    broker: AmqpBroker, queue: str, handler: Callable[[IncomingMessage], Awaitable[None]], n: int
) -> float:
    done = asyncio.Event()
    count = 0

    async def counted(message: IncomingMessage) -> None:
        nonlocal count
        await handler(message)
        count += 1
        if count >= n:
            done.set()

    started = time.perf_counter()
    tag = await broker.consume(queue, counted, prefetch=PREFETCH)
    async with asyncio.timeout(300):
        await done.wait()
    elapsed = time.perf_counter() - started
    await broker.cancel(tag)
    return n / elapsed


async def _noop(_event: Envelope[Any]) -> Emit:
    return []


async def _list_latency(service: QuarantineService, n_list: int) -> tuple[int, list[float], float]:
    """Fill to ``n_list`` records, then time pages over several filters and offsets."""
    filled_from, _ = await service.repo.search()
    total = filled_from
    started = time.perf_counter()
    reasons = ["schema_violation", "invalid_json", "max_attempts", "unauthorized"]
    pending: list[Awaitable[Any]] = []
    for i in range(total, n_list):
        message = DeadMessage(
            record_id=f"fill{i:08d}", body=b'{"x": %d}' % i, headers={h.REASON: reasons[i % 4]},
            properties={}, reason=reasons[i % 4], detail="", exception="", attempts=0,
            worker="bench", queue="q", producer=f"p{i % 100}", event_type=TYPE,
            event_id=f"e{i}", dead_at="", destination=None,
        )  # fmt: skip
        pending.append(service.repo.add_dead(message, now=1.7e9 + i, window_s=60))
        if len(pending) >= 30:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    fill_s = time.perf_counter() - started
    total, _ = await service.repo.search()
    queries: list[dict[str, Any]] = [
        {},
        {"reason": "max_attempts"},
        {"status": "quarantined", "kind": "message"},
        {"status": "quarantined", "kind": "message", "reason": "unauthorized"},
        {"offset": total // 2},
        {
            "reason": "invalid_json",
            "since": 1.7e9 + n_list * 0.4,
            "until": 1.7e9 + n_list * 0.6,
        },
    ]
    latencies: list[float] = []
    for _ in range(40):
        for query in queries:
            t0 = time.perf_counter()
            _, rows = await service.repo.search(limit=50, **query)
            latencies.append(time.perf_counter() - t0)
            assert rows
    return total, latencies, (total - filled_from) / fill_s


async def run(n: int, n_list: int, amqp_url: str, redis_url: str) -> dict[str, Any]:
    tag = "bench-q-" + uuid.uuid4().hex[:6]
    prefix = f"egbench:{tag}:"
    metrics = Metrics(CollectorRegistry())
    broker = AmqpBroker(amqp_url, metrics=metrics, name=f"eventguard-{tag}")
    await broker.start()
    redis = connect_redis(redis_url)
    store = Store(redis, prefix=prefix, timeout_s=30)
    plain_q, dead_q, events_x, sink_q = (
        f"eventguard.{tag}.plain",
        f"eventguard.{tag}.dead",
        f"eventguard.{tag}.events",
        f"eventguard.{tag}.sink",
    )
    topology = Topology(
        exchanges=(ExchangeSpec(events_x, "topic"),),
        queues=(
            QueueSpec(plain_q, {"x-queue-type": "quorum"}, ((events_x, TYPE),)),
            QueueSpec(dead_q, {"x-queue-type": "quorum"}),
            QueueSpec(
                sink_q, {"x-max-length": 1000, "x-overflow": "drop-head"}, ((events_x, "#"),)
            ),
        ),
    )
    await broker.declare(topology)
    try:
        # -- the runtime's plain consume rate --------------------------------------------------
        router = Router()
        router.add(payload_model(TYPE), _noop)
        runtime = RuntimeSettings(prefetch=PREFETCH)
        pipeline = Pipeline(
            worker=tag,
            router=router,
            broker=broker,
            publisher=Publisher(
                broker, worker=tag, user_id="guest", metrics=metrics, exchange=events_x
            ),
            idempotency=Idempotency(store, worker=tag, lease_s=30, done_ttl_s=600),
            settings=runtime,
            metrics=metrics,
            authorize=allow_all,
            retry_queues={},
        )
        valid = [
            to_message(
                new_event(TYPE, StrategyRevoked(user_id=f"u{i}", strategy="s"), source="bench"),
                user_id="guest",
                exchange=events_x,  # routing key = type, as the wire contract wants
            )
            for i in range(n)
        ]
        await _preload(broker, valid)
        consume_per_s = await _drain(broker, plain_q, pipeline, n)

        # -- records per second from the dead queue -------------------------------------------
        publisher = Publisher(
            broker, worker="quarantine", user_id="guest", metrics=metrics, exchange=events_x
        )
        ctx = WorkerContext("quarantine", Settings(), store, broker, publisher, metrics)
        service = QuarantineService(ctx)
        raw = RawPipeline(
            worker="quarantine",
            handler=service.on_dead,
            publisher=publisher,
            metrics=metrics,
            timeout_s=30,
        )
        dead = [
            OutgoingMessage(
                body=valid[i].body,
                routing_key=dead_q,
                exchange="",
                headers={
                    h.REASON: "schema_violation",
                    h.ERROR: "data.strategy: field required",
                    h.EXCEPTION: "ValidationError",
                    h.ORIGINAL_ROUTING_KEY: TYPE,
                    h.ORIGINAL_EXCHANGE: events_x,
                    h.ATTEMPT: 0,
                    h.WORKER: "bench",
                    h.QUEUE: plain_q,
                    h.DEAD_AT: f"2026-01-01T00:00:{i % 60:02d}+00:00",
                    h.PRODUCER: f"producer-{i % 50}",
                },
                message_id=valid[i].message_id,
                type=TYPE,
                user_id="guest",
            )
            for i in range(n)
        ]
        await _preload(broker, dead)
        record_per_s = await _drain(broker, dead_q, raw, n)

        # -- list latency at 100,000 records ---------------------------------------------------
        total, latencies, fill_per_s = await _list_latency(service, n_list)
        return {
            "n_messages": n,
            "prefetch": PREFETCH,
            "consume_per_s": round(consume_per_s, 1),
            "record_per_s": round(record_per_s, 1),
            "ratio_record_vs_consume": round(record_per_s / consume_per_s, 3),
            "target_ratio": 0.5,
            "records_for_list": total,
            "list_latency_ms_100k": round(_p(latencies, 0.5) * 1000, 3),
            "list_latency_p99_ms_100k": round(_p(latencies, 0.99) * 1000, 3),
            "list_latency_mean_ms_100k": round(statistics.fmean(latencies) * 1000, 3),
            "fill_records_per_s": round(fill_per_s, 1),
        }
    finally:
        await broker.close()
        async with aiormq.connect(amqp_url) as conn:
            channel = await conn.channel()
            for queue in (plain_q, dead_q, sink_q):
                await channel.queue_delete(queue)
            await channel.exchange_delete(events_x)
        keys = [k async for k in redis.scan_iter(match=prefix + "*", count=5000)]
        for start in range(0, len(keys), 5000):
            await redis.delete(*keys[start : start + 5000])
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5_000, help="messages per rate measurement")
    parser.add_argument("--list-records", type=int, default=100_000)
    args = parser.parse_args()
    configure_logging(level="WARNING", fmt="console")
    amqp = os.environ.get("EVENTGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    redis = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    result = asyncio.run(run(args.n, args.list_records, amqp, redis))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
