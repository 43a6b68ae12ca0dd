"""Per-call overhead of a closed circuit breaker and of a retry wrapper, side by side.

Each figure is (time of N wrapped calls - time of N bare calls) / N, best of several rounds,
wrapping a no-op coroutine. pybreaker has no asyncio call path without tornado, so its figure
wraps a plain function (its natural use). The shared breaker runs with its background sync
to the real Redis on; its Redis round trips are counted at the store, so other clients of the
same server do not blur the figure. Writes bench/results/reliability.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiobreaker
import purgatory
import pybreaker
import tenacity
from redis.asyncio import Redis

from common.reliability.breaker import CircuitBreaker
from common.reliability.breaker_types import BreakerConfig
from common.reliability.guard import Guards
from common.reliability.retry import RetryPolicy
from common.reliability.shared import SharedBreakerState
from common.store import Store

N = 200_000
ROUNDS = 9  # best of: the machine is shared, so take the quietest round
RESULTS = Path(__file__).parent / "results" / "reliability.json"


async def noop() -> int:
    return 1


def noop_sync() -> int:
    return 1


async def _time_async(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    for _ in range(N):
        await call()
    return time.perf_counter() - start


def _time_sync(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(N):
        call()
    return time.perf_counter() - start


async def _overhead_async(
    call: Callable[[], Awaitable[object]],
    *,
    between: Callable[[], Awaitable[object]] | None = None,
) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        bare = await _time_async(noop)
        wrapped = await _time_async(call)
        best = min(best, (wrapped - bare) / N * 1e6)
        if between is not None:  # outside the timed part, as between messages in a worker
            await between()
    return max(best, 0.0)


def _overhead_sync(call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        bare = _time_sync(noop_sync)
        wrapped = _time_sync(call)
        best = min(best, (wrapped - bare) / N * 1e6)
    return max(best, 0.0)


async def main() -> dict[str, float]:
    ours = CircuitBreaker("bench", BreakerConfig())
    shared_breaker = CircuitBreaker("bench-shared", BreakerConfig())
    client = Redis.from_url("redis://127.0.0.1:6379/15")
    store = Store(client, prefix="bench-rel:")
    round_trips = 0
    real_execute = store.execute

    async def counting(op: Any) -> Any:
        nonlocal round_trips
        round_trips += 1
        return await real_execute(op)

    store.execute = counting  # type: ignore[method-assign]
    shared = SharedBreakerState(shared_breaker, store)
    # The timed loop never suspends, so a background task could not run inside it (and a sync
    # in flight would time out behind it): the sync the background task makes runs between
    # rounds instead. Round trips are counted inside the timed part and between rounds.
    syncs = 0

    async def sync() -> None:
        nonlocal syncs, round_trips
        before = round_trips
        await shared.sync_once()
        syncs += round_trips - before
        round_trips = before

    aio = aiobreaker.CircuitBreaker()
    pure = purgatory.AsyncCircuitBreakerFactory()
    await pure.initialize()
    pure_breaker = await pure.get_breaker("bench")
    sync_breaker = pybreaker.CircuitBreaker()
    policy = RetryPolicy(max_attempts=3)
    guard = Guards().guard("http:bench")

    async def purgatory_call() -> int:
        async with pure_breaker:
            return await noop()

    @tenacity.retry(stop=tenacity.stop_after_attempt(3))
    async def tenacity_call() -> int:
        return await noop()

    async def protected() -> int:
        async with ours.protect():
            return await noop()

    shared_figure = await _overhead_async(lambda: shared_breaker.call(noop), between=sync)
    shared_round_trips = round_trips  # inside the timed loops only
    figures = {
        "breaker_overhead_us": await _overhead_async(lambda: ours.call(noop)),
        "breaker_shared_overhead_us": shared_figure,
        "breaker_protect_overhead_us": await _overhead_async(protected),
        "aiobreaker_overhead_us": await _overhead_async(lambda: aio.call_async(noop)),
        "purgatory_overhead_us": await _overhead_async(purgatory_call),
        "pybreaker_overhead_us": _overhead_sync(lambda: sync_breaker.call(noop_sync)),
        "retry_overhead_us": await _overhead_async(lambda: policy.run(lambda _t: noop())),
        "tenacity_overhead_us": await _overhead_async(tenacity_call),
        "guard_overhead_us": await _overhead_async(lambda: guard.call(noop)),
    }
    figures["shared_mode_redis_commands_per_call"] = shared_round_trips / (N * ROUNDS)
    figures["shared_mode_syncs_between_rounds"] = syncs
    figures["shared_mode_calls_flushed"] = shared.flushed_calls
    keys = [k async for k in client.scan_iter(match="bench-rel:*", count=10_000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    figures = {k: round(v, 4) for k, v in figures.items()}
    peers = ("pybreaker", "aiobreaker", "purgatory")
    figures["breaker_below_every_peer"] = float(
        all(figures["breaker_overhead_us"] < figures[f"{p}_overhead_us"] for p in peers)
    )
    return figures


if __name__ == "__main__":
    results = asyncio.run(main())
    width = max(len(k) for k in results)
    print(f"{'figure':<{width}}  {'value':>10}")
    print(f"{'-' * width}  {'-' * 10}")
    for key, value in results.items():
        print(f"{key:<{width}}  {value:>10}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
