"""Benchmark the console's pages with 100,000 quarantine records in the real Redis.

Fills Redis through the quarantine worker's own repository (the same Lua step as a dead letter),
signs in with an API key, then times every page over HTTP (server-side render included):
p50 and p95 per page, target < 300 ms. The broker is the in-memory one: the pages read Redis,
and the fleet/queue figures come from the tap and the broker's own depth (no network).
Failure groups are timed as served (recomputed at most every 5 s) and uncached. The audit trail
holds 5,000 records (what one query reads at most; the filtered page scans them all) and the AI
models page two models and 200 requesters with spend in the current window.

Writes ``bench/results/console.json``. Run: ``.venv/bin/python -m bench.bench_console``
(EVENTGUARD_BENCH_REDIS_URL overrides the local Redis, database 14).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from common.bus import headers as h
from common.bus.memory import MemoryBroker
from common.config import Settings
from common.config.sections import ConsoleSettings
from common.config.workers import AiFallbackSettings, AiModelSettings
from common.logging import configure_logging
from common.metrics import Metrics
from common.security.apikeys import ApiKeyStore
from common.security.keys import demo_settings
from common.store import Store, connect_redis
from common.testing import forget_prefix
from eventguard.console import console_serving
from schemas.envelope import new_event
from schemas.ops import AuditRecorded
from workers.ai_fallback import keys as ai_keys
from workers.quarantine.audit import AuditTrail
from workers.quarantine.records import DeadMessage
from workers.quarantine.repository import Repository

RESULTS = Path(__file__).parent / "results" / "console.json"
TYPES = ("marketplace.strategy.revoked", "ai.completion.requested", "opportunity.scan.requested")
REASONS = ("schema_violation", "invalid_json", "max_attempts", "unauthorized")
TARGET_MS = 300.0


async def _fill(repo: Repository, n: int) -> float:
    started = time.perf_counter()
    pending = []
    now = time.time() - n
    for i in range(n):
        reason = REASONS[i % 4]
        message = DeadMessage(
            record_id=f"bench{i:08d}", body=b'{"x": %d, "password": "p%d"}' % (i, i),
            headers={h.REASON: reason}, properties={}, reason=reason, detail="", exception="",
            attempts=1, worker=f"w{i % 3}", queue="q", producer=f"p{i % 50}",
            event_type=TYPES[i % 3], event_id=f"e{i}", dead_at="", destination=None,
        )  # fmt: skip
        pending.append(repo.add_dead(message, now=now + i, window_s=60, announce=False))
        if len(pending) >= 50:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return n / (time.perf_counter() - started)


async def _fill_levers(store: Store, settings: Settings, audits: int, actors: int) -> None:
    """Audit records (as the quarantine worker keeps them) and requesters' spend."""
    trail = AuditTrail(store, retention_s=settings.quarantine.audit_retention_s, now=time.time)
    for start in range(0, audits, 100):
        batch = [
            AuditRecorded(
                subject=f"op{i % 20}", role="operator", auth="session", action="quarantine.release",
                method="POST", route="/quarantine/records/{id}/release", target={"id": f"r{i}"},
                outcome="ok", status=202, at=datetime.now(UTC), worker="console",
            )
            for i in range(start, min(audits, start + 100))
        ]  # fmt: skip
        await asyncio.gather(
            *(trail.add(new_event("ops.audit.recorded", a, source="bench")) for a in batch)
        )
    window = int(time.time() // settings.ai_fallback.budget_window_s)
    index = ai_keys.budget_index(store, window)
    scopes = [f"actor:user{i}" for i in range(actors)]

    async def write(r: Any) -> Any:
        async with r.pipeline(transaction=False) as pipe:
            pipe.sadd(index, *scopes)
            for i, scope in enumerate(scopes):
                key = ai_keys.budget(store, window, scope)
                pipe.hset(key, mapping={"tokens": 100 * i, "micro_usd": 7 * i})
            return await pipe.execute()

    await store.execute(write)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, rounds: int, redis_url: str) -> dict[str, Any]:
    prefix = f"egbench-console-{uuid.uuid4().hex[:6]}:"
    client = connect_redis(redis_url)
    store = Store(client, prefix=prefix)
    broker = MemoryBroker()
    await broker.start()
    settings = Settings(
        redis_key_prefix=prefix,
        security=demo_settings(),
        console=ConsoleSettings(secure_cookie=False),
        ai_fallback=AiFallbackSettings(
            models=tuple(
                AiModelSettings(
                    name=name,
                    provider="openai",
                    endpoint="http://127.0.0.1:9/v1",
                    context_window=8_000,
                    max_output=100,
                )
                for name in ("bench-primary", "bench-fallback")
            ),
            actor_max_tokens=1_000_000,
        ),
    )
    try:
        fill_rate = await _fill(Repository(store), n)
        await _fill_levers(store, settings, audits=5_000, actors=200)
        _, key = await ApiKeyStore(store).create("bench", "operator")
        metrics = Metrics(CollectorRegistry())
        jar = aiohttp.CookieJar(unsafe=True)
        async with (
            console_serving(
                settings, store=store, broker=broker, metrics=metrics, host="127.0.0.1", port=0
            ) as console,
            # unsafe=True: keep cookies for an IP address (127.0.0.1)
            aiohttp.ClientSession(base_url=console.url, cookie_jar=jar) as http,
        ):
            async with http.post("/signin", data={"credential": key}) as response:
                assert response.status == 200, response.status
            pages = {
                "fleet": "/fleet",
                "quarantine": "/quarantine",
                "quarantine_all_statuses": "/quarantine?status=all",
                "quarantine_by_reason": "/quarantine?reason=invalid_json",
                "quarantine_deep_page": f"/quarantine?offset={n // 2}",
                "quarantine_by_worker_scanned": "/quarantine?worker=w1",
                "quarantine_groups": "/quarantine/groups",
                "record": "/quarantine/records/bench00000042",
                "alerts": "/alerts",
                "models": "/models",
                "scans": "/scans",
                "live": "/live",
                "audit": "/audit",
                "audit_filtered_scan": "/audit?subject=nobody",
            }
            figures: dict[str, dict[str, float]] = {}
            pages["quarantine_groups_uncached"] = "/quarantine/groups"
            for name, path in pages.items():
                # Groups are recomputed at most every 5 s; the uncached pass recomputes each time.
                console.console.quarantine.groups_ttl_s = 0.0 if "uncached" in name else 5.0
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    async with http.get(path, allow_redirects=False) as response:
                        await response.read()
                        assert response.status == 200, (path, response.status)
                    times.append((time.perf_counter() - t0) * 1000)
                figures[name] = {
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(_pct(times, 0.95), 1),
                }
    finally:
        await forget_prefix(client, prefix)
        await client.aclose()
        await broker.close()
    worst = max(f["p95_ms"] for f in figures.values())
    return {
        "records": n,
        "rounds_per_page": rounds,
        "fill_records_per_s": round(fill_rate),
        "pages": figures,
        "worst_p95_ms": worst,
        "target_ms": TARGET_MS,
        "meets_target": worst < TARGET_MS,
        "audit_records": 5_000,
        "requesters_with_spend": 200,
        "note": "one run on a 2-core machine shared with seven other engineers' tests",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    configure_logging(level="WARNING", fmt="console")
    redis = os.environ.get("EVENTGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    result = asyncio.run(run(args.records, args.rounds, redis))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
