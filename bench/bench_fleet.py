"""Fleet throughput: the four workers as separate processes over the real RabbitMQ and Redis,
side by side with the runtime's single-worker benchmark, in one run.

Scenarios (each round runs them all, alternating; the best round of each counts):

  runtime single  the runtime benchmark's idempotent consumer (bench_runtime), in process,
                  draining ``4 x per-worker`` 1 KiB events: the reference
  one process     one worker process (the noop runtime below) draining the same count
  fleet noop      four worker processes, one per worker, each ``python -m bench.fleet_worker``:
                  the real runtime (its queue and bindings, Redis behind the guard, the
                  idempotency claim, producer checks, heartbeats, ops server) with handlers
                  that return at once; each drains ``per-worker`` events of its own types
  fleet real      four ``eventguard run`` processes with their real handlers on their cheapest
                  events (heartbeats, non-critical alerts, quarantine releases, purchases),
                  reported beside: what the handlers add

The backlog is published before the processes start. Rates are taken in the steady state
(every worker busy: from when each has taken 5% of its backlog to when the first has taken
95%), reading queue depths with passive declares (no metrics scraping competing for the CPU);
worker CPU per message is read from /proc over the same window. Target (issue #10): fleet noop
>= 0.7x runtime single. Writes bench/results/fleet.json.

    .venv/bin/python -m bench.bench_fleet [--per-worker N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
from prometheus_client import CollectorRegistry

from bench.bench_runtime import Infra, consume_eventguard, make_events
from common.bus.amqp import AmqpBroker
from common.bus.publisher import to_message
from common.bus.topology import worker_topology
from common.config import Settings
from common.metrics import Metrics
from common.store import connect_redis
from common.testing import forget_prefix
from schemas.envelope import Envelope, Payload, new_event
from schemas.health import AlertRaised, Heartbeat
from schemas.marketplace import StrategyPurchased
from schemas.quarantine import QuarantineEntryReleased
from workers.registry import consumed_types

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
AMQP = os.environ.get("EVENTGUARD_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
WORKERS = ("health_monitor", "quarantine", "ai_fallback", "opportunity_discovery")
PREFETCH = 100
TICKS = os.sysconf("SC_CLK_TCK")


def _event(worker: str, i: int) -> Envelope[Any]:
    """The cheapest event ``worker`` consumes (``i`` makes each one distinct)."""
    now = datetime.now(UTC)
    data: Payload
    if worker == "health_monitor":
        data = Heartbeat(worker=f"bench-{i % 50}", instance="b", started_at=now, uptime_s=1)
        return new_event("health.heartbeat", data, source="bench")
    if worker == "quarantine":
        data = AlertRaised(fingerprint=f"f{i}", rule="Bench", severity="warning", started_at=now)
        return new_event("health.alert.raised", data, source="bench")
    if worker == "ai_fallback":
        data = QuarantineEntryReleased(
            record_id=f"r{i}", kind="producer", entity_id=f"p{i}", released_by="bench"
        )
        return new_event("quarantine.entry.released", data, source="bench")
    data = StrategyPurchased(user_id=f"u{i % 100}", strategy="momentum")
    return new_event("marketplace.strategy.purchased", data, source="bench")


async def _backlog(workers: tuple[str, ...], per_worker: int) -> dict[str, str]:
    """Declare each worker's topology, publish its backlog; return worker -> work queue."""
    settings = Settings()
    types = consumed_types()
    broker = AmqpBroker(AMQP, metrics=Metrics(CollectorRegistry()), name="bench-fleet")
    await broker.start()
    queues = {}
    try:
        for worker in workers:
            topology = worker_topology(worker, types[worker], settings)
            await broker.declare(topology)
            queues[worker] = topology.work_queue
        window = asyncio.Semaphore(256)

        async def publish(event: Envelope[Any]) -> None:
            async with window:
                await broker.publish(to_message(event, user_id="guest"))

        await asyncio.gather(*(publish(_event(w, i)) for w in workers for i in range(per_worker)))
    finally:
        await broker.close()
    return queues


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _steady(samples: list[tuple[float, list[int], float]], per_worker: int) -> tuple[float, float]:
    """(msg/s, worker CPU us per message) between every worker at 5% and the first at 95%."""
    begin = next(i for i, (_, c, _) in enumerate(samples) if min(c) >= 0.05 * per_worker)
    end = next(i for i, (_, c, _) in enumerate(samples) if max(c) >= 0.95 * per_worker)
    (t0, c0, cpu0), (t1, c1, cpu1) = samples[begin], samples[end]
    messages = sum(c1) - sum(c0)
    return messages / (t1 - t0), (cpu1 - cpu0) / messages * 1e6


async def processes(kind: str, workers: tuple[str, ...], per_worker: int) -> dict[str, float]:
    """Start one process per entry of ``workers`` (``kind`` noop or real) on a fresh backlog."""
    queues = await _backlog(tuple(dict.fromkeys(workers)), per_worker)
    prefix = f"bench-fleet-{uuid.uuid4().hex[:6]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGUARD_")}
    env.update(
        {
            "EVENTGUARD_BROKER_URL": AMQP,
            "EVENTGUARD_REDIS_URL": REDIS,
            "EVENTGUARD_REDIS_KEY_PREFIX": prefix,
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS": json.dumps(["guest"]),
            "EVENTGUARD_OPPORTUNITY_DISCOVERY__MARKET_SOURCE": "simulator",
            "EVENTGUARD_RUNTIME__PREFETCH": str(PREFETCH),
            "EVENTGUARD_LOG_LEVEL": "WARNING",
            "EVENTGUARD_OPS_PORT": "0",
        }
    )
    module = {"noop": ["bench.fleet_worker"], "real": ["eventguard.cli", "run"]}[kind]
    procs = [
        subprocess.Popen(  # noqa: S603, ASYNC220 - our own modules; started before timing begins
            [sys.executable, "-m", *module, worker],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for worker in workers
    ]
    samples: list[tuple[float, list[int], float]] = []
    try:
        async with aiormq.connect(AMQP) as conn, asyncio.timeout(300):
            channel = await conn.channel()
            while True:
                depths = [
                    (await channel.queue_declare(queues[w], passive=True)).message_count or 0
                    for w in dict.fromkeys(workers)
                ]
                cpu = sum(_cpu_s(p.pid) for p in procs)
                samples.append((time.perf_counter(), [per_worker - d for d in depths], cpu))
                if not any(depths):
                    break
                await asyncio.sleep(0.2)
    finally:
        for process in procs:
            process.send_signal(signal.SIGTERM)
        for process in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        await _forget(prefix)
    rate, cpu_us = _steady(samples, per_worker)
    return {"msg_per_s": rate, "worker_cpu_us_per_msg": cpu_us}


async def runtime_single(messages: int) -> dict[str, float]:
    """The runtime benchmark's idempotent single-worker consumer on ``messages`` events."""
    bodies = [e.model_dump_json().encode() for e in make_events(messages)]
    async with aiormq.connect(AMQP) as conn:
        infra = Infra(conn, uuid.uuid4().hex[:6])
        queue = await infra.queue("fleet-reference")
        await infra.fill(queue, bodies)
        cpu = time.process_time()
        elapsed = (await consume_eventguard(queue, messages, PREFETCH, idempotent=True)).elapsed
        cpu_us = (time.process_time() - cpu) / messages * 1e6
        await infra.cleanup()
    return {"msg_per_s": messages / elapsed, "worker_cpu_us_per_msg": cpu_us}


async def _forget(prefix: str) -> None:
    redis = connect_redis(REDIS)
    try:
        await forget_prefix(redis, prefix)
    finally:
        await redis.aclose()


async def main(per_worker: int, rounds: int) -> dict[str, Any]:
    """Run every scenario ``rounds`` times; return the best figures."""
    total = per_worker * len(WORKERS)
    scenarios: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {
        "runtime_single": lambda: runtime_single(total),
        "one_process": lambda: processes("noop", ("quarantine",), total),
        "fleet_noop": lambda: processes("noop", WORKERS, per_worker),
        "fleet_real": lambda: processes("real", WORKERS, per_worker),
    }
    best: dict[str, dict[str, float]] = {}
    for round_ in range(1, rounds + 1):
        print(f"round {round_}/{rounds}")
        for name, run in scenarios.items():
            figures = await run()
            print(
                f"  {name:<16} {figures['msg_per_s']:>8.0f} msg/s"
                f"  {figures['worker_cpu_us_per_msg']:>6.0f} us worker CPU/msg"
            )
            if figures["msg_per_s"] > best.get(name, {}).get("msg_per_s", 0.0):
                best[name] = figures
    single = best["runtime_single"]["msg_per_s"]
    result: dict[str, Any] = {
        "workers": len(WORKERS),
        "per_worker": per_worker,
        "prefetch": PREFETCH,
        "rounds": rounds,
        "cpus": os.cpu_count(),
    }
    for name, figures in best.items():
        result[f"{name}_msg_per_s"] = round(figures["msg_per_s"], 1)
        result[f"{name}_worker_cpu_us_per_msg"] = round(figures["worker_cpu_us_per_msg"], 1)
    for fleet in ("fleet_noop", "fleet_real"):
        ratio = best[fleet]["msg_per_s"] / single
        result[f"ratio_{fleet}_vs_runtime_single"] = round(ratio, 3)
    result["target"] = {"ratio_fleet_noop_vs_runtime_single": 0.7}
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-worker", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = asyncio.run(main(args.per_worker, args.rounds))
    for key, value in results.items():
        print(f"{key:<44} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
