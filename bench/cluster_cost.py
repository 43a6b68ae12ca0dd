"""What the cluster form costs, measured side by side in one run on this machine.

Broker (publish with confirms + consume with acks through ``AmqpBroker``, 1 KiB messages,
``--count`` each, a window of 200 publishes in flight):

  one node        the machine's own RabbitMQ (``EVENTGUARD_TEST_AMQP_URL``), a quorum queue
  cluster, 1 copy the private three-node cluster, a quorum queue with one replica
  cluster, 3 copies the same cluster, three replicas (``EVENTGUARD_QUORUM_INITIAL_GROUP_SIZE``)

Redis (the idempotency claim and done mark of ``--count`` messages, 100 at a time; and
``--count`` dead letters recorded by the quarantine worker's ADD_DEAD script, 100 at a time):

  one node        the machine's own Redis (``EVENTGUARD_TEST_REDIS_URL``)
  sentinel        the private primary found through Sentinel, WAIT off
  sentinel + WAIT the same with ``EVENTGUARD_REDIS_WAIT_REPLICAS=1`` (done marks and quarantine
                  records wait for a replica)

Starts the private cluster with scripts/rabbit-cluster.sh and scripts/redis-ha.sh and always
removes it. Not part of ``make bench`` (it needs the cluster, which saturates two cores while
it boots). Writes bench/results/cluster.json.

    .venv/bin/python -m bench.cluster_cost [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.bus.idempotency import Idempotency
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import QUORUM_GROUP_SIZE, QueueSpec, Topology
from common.config import Settings
from common.metrics import Metrics
from common.store import Store, connect_redis, connect_sentinel
from common.testing import forget_prefix
from workers.quarantine.records import DeadMessage
from workers.quarantine.repository import Repository

ROOT = Path(__file__).resolve().parents[1]
_LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
AMQP = os.environ.get("EVENTGUARD_TEST_AMQP_URL", _LOCAL_AMQP)
REDIS = os.environ.get("EVENTGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BODY = b"x" * 1024
_CALL_TIMEOUT_S = 10.0


def _script(name: str, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - the repository's own scripts
        ["bash", str(ROOT / "scripts" / name), *args],  # noqa: S607 - bash from PATH
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    )
    return done.stdout.strip()


async def broker_rate(urls: list[str], group_size: int | None, count: int) -> float:
    """Messages per second through one quorum queue, publish to last ack."""
    broker = AmqpBroker(urls, metrics=Metrics(CollectorRegistry()), name="bench-cluster")
    await broker.start()
    queue = f"bench.cluster.{uuid.uuid4().hex[:8]}"
    sized = {} if group_size is None else {QUORUM_GROUP_SIZE: group_size}
    await broker.declare(
        Topology(exchanges=(), queues=(QueueSpec(queue, {"x-queue-type": "quorum", **sized}),))
    )
    done = asyncio.Event()
    seen = 0

    async def consume(message: IncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen >= count:
            done.set()

    window = asyncio.Semaphore(200)

    async def publish(n: int) -> None:
        async with window:
            await broker.publish(
                OutgoingMessage(body=BODY, routing_key=queue, exchange="", message_id=str(n))
            )

    try:
        await broker.consume(queue, consume, prefetch=200)
        started = time.perf_counter()
        await asyncio.gather(*(publish(n) for n in range(count)))
        await asyncio.wait_for(done.wait(), 120)
        return count / (time.perf_counter() - started)
    finally:
        await broker.close()
        await _delete_queue(urls, queue)


async def _delete_queue(urls: list[str], queue: str) -> None:
    connection = await aiormq.connect(urls[0])
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
    finally:
        await connection.close()


async def idempotency_rate(store: Store, count: int) -> float:
    """Messages per second through the claim and the done mark, 100 at a time."""
    idempotency = Idempotency(store, worker="bench", lease_s=30, done_ttl_s=120)
    gate = asyncio.Semaphore(100)

    async def one(n: int) -> None:
        async with gate:
            await idempotency.claim(f"e{n}")
            await idempotency.done(f"e{n}")

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    rate = count / (time.perf_counter() - started)
    await forget_prefix(store.client, store.prefix)
    return rate


def _dead(n: int) -> DeadMessage:
    return DeadMessage(
        record_id=f"d{n}",
        body=BODY,
        headers={},
        properties={},
        reason="invalid_json",
        detail="bench",
        exception="",
        attempts=1,
        worker="bench",
        queue="bench",
        producer="bench",
        event_type="bench.dead",
        event_id=f"e{n}",
        dead_at="",
        destination=None,
    )


async def quarantine_rate(store: Store, count: int) -> float:
    """Dead letters per second recorded by the quarantine's ADD_DEAD script, 100 at a time."""
    repository = Repository(store)
    gate = asyncio.Semaphore(100)

    async def one(n: int) -> None:
        async with gate:
            await repository.add_dead(_dead(n), now=time.time(), window_s=60, announce=False)

    await one(count)  # loads the script (EVAL once), outside the measurement
    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(count)))
    rate = count / (time.perf_counter() - started)
    await forget_prefix(store.client, store.prefix)
    return rate


async def run(count: int, rounds: int) -> dict[str, Any]:
    """Every variant ``rounds`` times, alternating; the best round of each."""
    urls = _script("rabbit-cluster.sh", "urls").split(",")
    sentinels = tuple(_script("redis-ha.sh", "sentinels").split(","))
    prefix = f"bench-cluster-{uuid.uuid4().hex[:6]}:"
    behind = Settings(redis_sentinels=sentinels)
    # A per-call timeout of 10 s (the guard's 1 s tripped its breaker on a machine this busy):
    # this measures throughput, not the guard.
    stores = {
        "one node": Store(connect_redis(REDIS), prefix=prefix, timeout_s=_CALL_TIMEOUT_S),
        "sentinel": Store(connect_sentinel(behind), prefix=prefix, timeout_s=_CALL_TIMEOUT_S),
        "sentinel + WAIT": Store(
            connect_sentinel(behind), prefix=prefix, timeout_s=_CALL_TIMEOUT_S, wait_replicas=1
        ),
    }
    brokers: dict[str, tuple[list[str], int | None]] = {
        "one node": ([AMQP], None),
        "cluster, 1 copy": (urls, 1),
        "cluster, 3 copies": (urls, 3),
    }
    best: dict[str, dict[str, float]] = {
        "broker_msg_per_s": {},
        "redis_msg_per_s": {},
        "quarantine_records_per_s": {},
    }
    try:
        for _ in range(rounds):
            for name, (nodes, size) in brokers.items():
                rate = await broker_rate(nodes, size, count)
                best["broker_msg_per_s"][name] = max(rate, best["broker_msg_per_s"].get(name, 0))
            for name, store in stores.items():
                rate = await idempotency_rate(store, count)
                best["redis_msg_per_s"][name] = max(rate, best["redis_msg_per_s"].get(name, 0))
                rate = await quarantine_rate(store, count)
                records = best["quarantine_records_per_s"]
                records[name] = max(rate, records.get(name, 0))
    finally:
        for store in stores.values():
            await store.close()
    figures: dict[str, Any] = {
        k: {n: round(v) for n, v in rates.items()} for k, rates in best.items()
    }
    broker, redis = best["broker_msg_per_s"], best["redis_msg_per_s"]
    records = best["quarantine_records_per_s"]
    figures["ratios"] = {
        "cluster 3 copies / one node": round(broker["cluster, 3 copies"] / broker["one node"], 2),
        "cluster 3 copies / 1 copy": round(
            broker["cluster, 3 copies"] / broker["cluster, 1 copy"], 2
        ),
        "WAIT on / off": round(redis["sentinel + WAIT"] / redis["sentinel"], 2),
        "quarantine records, WAIT on / off": round(
            records["sentinel + WAIT"] / records["sentinel"], 2
        ),
    }
    return figures


def main() -> None:
    """Start the private cluster, measure, always remove it, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    try:
        _script("rabbit-cluster.sh", "start")
        _script("redis-ha.sh", "start")
        figures = asyncio.run(run(args.count, args.rounds))
    finally:
        for script in ("rabbit-cluster.sh", "redis-ha.sh"):
            subprocess.run(  # noqa: S603 - the repository's own scripts
                ["bash", str(ROOT / "scripts" / script), "clean"],  # noqa: S607
                capture_output=True,
                check=False,
                timeout=120,
            )
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "count": args.count,
        "rounds": args.rounds,
        "note": "2-core machine shared with other runs: compare ratios of one run only",
        **figures,
    }
    out = ROOT / "bench" / "results" / "cluster.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
