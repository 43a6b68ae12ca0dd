"""Fleet throughput: all four workers as separate processes over the real RabbitMQ and Redis.

Each worker gets a backlog of events its handler does almost nothing with (heartbeats for
health_monitor, non-critical alerts for quarantine, quarantine releases for ai_fallback's
view, purchases for opportunity_discovery), published before the workers start. The figure is
the fleet's combined consume rate in the steady state (every worker busy: from when each has
taken 5% of its backlog to when the first has taken 95%; the whole drain, start-up and tail
included, is reported beside it), compared with the runtime benchmark's single-worker rate
with idempotency (bench/results/runtime.json). Target: >= 0.7x.
Writes bench/results/fleet.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from common.bus.amqp import AmqpBroker
from common.bus.publisher import to_message
from common.bus.topology import worker_topology
from common.config import RuntimeSettings
from common.metrics import Metrics
from schemas.envelope import Envelope, Payload, new_event
from schemas.health import AlertRaised, Heartbeat
from schemas.marketplace import StrategyPurchased
from schemas.quarantine import QuarantineEntryReleased

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
REDIS = "redis://127.0.0.1:6379/15"
PER_WORKER = 3_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _event(worker: str, i: int) -> Envelope[Any]:
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


async def _consumed(session: aiohttp.ClientSession, port: int) -> float:
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return 0.0
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "eventguard_messages_consumed_total" and sample.labels.get(
                "type"
            ) in {
                "health.heartbeat",
                "health.alert.raised",
                "quarantine.entry.released",
                "marketplace.strategy.purchased",
            }:
                total += sample.value
    return total


async def main() -> dict[str, Any]:
    workers = ["health_monitor", "quarantine", "ai_fallback", "opportunity_discovery"]
    runtime = RuntimeSettings()
    broker = AmqpBroker(AMQP, metrics=Metrics(CollectorRegistry()), name="bench-fleet")
    await broker.start()
    for worker in workers:
        types = {
            "health_monitor": ["health.heartbeat"],
            "quarantine": [
                "health.alert.raised",
                "quarantine.release.requested",
                "quarantine.requested",
            ],
            "ai_fallback": [
                "ai.completion.requested",
                "quarantine.entry.added",
                "quarantine.entry.released",
            ],
            "opportunity_discovery": [
                "marketplace.strategy.purchased",
                "marketplace.strategy.revoked",
                "opportunity.scan.requested",
            ],
        }[worker]
        await broker.declare(
            worker_topology(
                worker,
                types,
                retry_delays_s=runtime.retry_delays_s,
                delivery_limit=runtime.delivery_limit,
            )
        )
    window = asyncio.Semaphore(256)

    async def publish(event: Envelope[Any]) -> None:
        async with window:
            await broker.publish(to_message(event, user_id="guest"))

    await asyncio.gather(*(publish(_event(w, i)) for w in workers for i in range(PER_WORKER)))
    await broker.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGUARD_")}
    env.update(
        {
            "EVENTGUARD_BROKER_URL": AMQP,
            "EVENTGUARD_REDIS_URL": REDIS,
            "EVENTGUARD_REDIS_KEY_PREFIX": f"bench-fleet-{uuid.uuid4().hex[:6]}:",
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": secrets.token_urlsafe(48),
            "EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS": json.dumps(["guest"]),
            "EVENTGUARD_OPPORTUNITY_DISCOVERY__MARKET_SOURCE": "simulator",
            "EVENTGUARD_RUNTIME__PREFETCH": "100",
            "EVENTGUARD_LOG_LEVEL": "WARNING",
        }
    )
    ports = {w: _port() for w in workers}
    processes = [
        subprocess.Popen(  # noqa: S603, ASYNC220 - our own CLI; started before timing begins
            [sys.executable, "-m", "workers.cli", "run", w],
            env={**env, "EVENTGUARD_OPS_PORT": str(ports[w])},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for w in workers
    ]
    total = PER_WORKER * len(workers)
    samples: list[tuple[float, list[float]]] = []
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(300):
            while True:
                counts = list(
                    await asyncio.gather(*(_consumed(session, p) for p in ports.values()))
                )
                samples.append((time.perf_counter(), counts))
                if sum(counts) >= total:
                    break
                await asyncio.sleep(0.1)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
    # Steady state: from when every worker has taken 5% of its backlog to when the first one
    # has taken 95% (start-up and the tail, where fewer than four work, are left out).
    begin = next(i for i, (_, c) in enumerate(samples) if min(c) >= 0.05 * PER_WORKER)
    end = next(i for i, (_, c) in enumerate(samples) if max(c) >= 0.95 * PER_WORKER)
    (t0, c0), (t1, c1) = samples[begin], samples[end]
    rate = (sum(c1) - sum(c0)) / (t1 - t0)
    whole = total / (samples[-1][0] - next(t for t, c in samples if sum(c) > 0))
    single = json.loads((RESULTS / "runtime.json").read_text())["consume_eventguard_idem_msg_per_s"]
    return {
        "workers": len(workers),
        "messages": total,
        "fleet_msg_per_s": round(rate, 1),
        "fleet_whole_drain_msg_per_s": round(whole, 1),
        "single_worker_idempotent_msg_per_s": single,
        "ratio_vs_single_worker": round(rate / single, 3),
        "target": 0.7,
    }


if __name__ == "__main__":
    results = asyncio.run(main())
    for key, value in results.items():
        print(f"{key:<36} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.json").write_text(json.dumps(results, indent=2) + "\n")
