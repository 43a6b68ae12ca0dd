"""Single-flight, the TTL cache, the batcher and the bulkhead under concurrency."""

from __future__ import annotations

import asyncio
import functools

import pytest

from common.reliability import (
    BatchError,
    Bulkhead,
    BulkheadFull,
    DynamicBatcher,
    ManualClock,
    RequestDeduplicator,
    request_key,
)


async def test_concurrent_duplicates_share_one_call_without_deadlock() -> None:
    """100 identical concurrent requests make one call and all get its result (regression)."""
    dedup: RequestDeduplicator[str] = RequestDeduplicator()
    calls = 0
    gate = asyncio.Event()

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "answer"

    tasks = [asyncio.create_task(dedup.run("k", fetch)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    async with asyncio.timeout(2):
        results = await asyncio.gather(*tasks)
    assert calls == 1
    assert set(results) == {"answer"}
    assert dedup.joined == 99


async def test_different_arguments_never_share_a_result() -> None:
    """Keys cover every argument, so calls that differ in one get their own answer (regression)."""
    dedup: RequestDeduplicator[str] = RequestDeduplicator(ttl_s=60)

    async def answer(prompt: str, model: str, max_tokens: int) -> str:
        return f"{prompt}/{model}/{max_tokens}"

    a = await dedup.run(request_key("hi", model="m1", max_tokens=5), lambda: answer("hi", "m1", 5))
    b = await dedup.run(request_key("hi", model="m2", max_tokens=5), lambda: answer("hi", "m2", 5))
    c = await dedup.run(request_key("hi", model="m1", max_tokens=9), lambda: answer("hi", "m1", 9))
    assert (a, b, c) == ("hi/m1/5", "hi/m2/5", "hi/m1/9")


async def test_cache_is_bounded_lru_with_ttl_and_failures_not_cached() -> None:
    """Entries expire, the oldest are evicted past the bound, and errors are never cached."""
    clock = ManualClock()
    dedup: RequestDeduplicator[int] = RequestDeduplicator(ttl_s=10, max_entries=2, clock=clock)

    async def value(n: int) -> int:
        return n

    for n in range(3):
        await dedup.run(n, functools.partial(value, n))
    assert len(dedup) == 2
    await dedup.run(2, lambda: value(99))
    assert dedup.hits == 1
    clock.advance(11)
    assert await dedup.run(2, lambda: value(7)) == 7

    async def broken() -> int:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        await dedup.run("e", broken)
    assert await dedup.run("e", lambda: value(1)) == 1


async def test_batcher_flushes_on_size_and_on_time() -> None:
    """A full batch goes at once; a partial one after max_wait."""
    batches: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        batches.append(items)
        return [i * 2 for i in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(double, max_size=3, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert [len(b) for b in batches] == [3, 2]


async def test_batcher_wrong_result_count_fails_every_caller() -> None:
    """A processor returning the wrong number of results fails all waiters clearly."""

    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(short, max_size=4, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert all(isinstance(r, BatchError) for r in results)


async def test_batcher_shutdown_flushes_pending_and_refuses_new() -> None:
    """shutdown() processes what is pending and then refuses submissions."""

    async def echo(items: list[int]) -> list[int]:
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(echo, max_size=100, max_wait_s=60)
    pending = asyncio.create_task(batcher.submit(7))
    await asyncio.sleep(0)
    await batcher.shutdown()
    assert await pending == 7
    with pytest.raises(BatchError):
        await batcher.submit(8)


async def test_bulkhead_bounds_concurrency_and_queue() -> None:
    """At most max_concurrent run, max_waiting wait, the rest are rejected and counted."""
    bulkhead = Bulkhead("b", max_concurrent=2, max_waiting=1)
    gate = asyncio.Event()
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        async with bulkhead:
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

    tasks = [asyncio.create_task(work()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 2
    assert sum(isinstance(r, BulkheadFull) for r in results) == 2
    assert bulkhead.rejected == 2
    assert bulkhead.active == 0
