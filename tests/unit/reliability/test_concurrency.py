"""Single-flight, the TTL cache, the batcher and the bulkhead under concurrency."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.reliability.batcher import DynamicBatcher
from common.reliability.bulkhead import Bulkhead
from common.reliability.clock import ManualClock
from common.reliability.dedup import RequestDeduplicator, request_key
from common.reliability.errors import BatchError, BulkheadFull


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


async def test_a_cancelled_leader_does_not_cancel_its_followers() -> None:
    """When the caller running the shared call is cancelled, a follower runs it and succeeds."""
    dedup: RequestDeduplicator[str] = RequestDeduplicator()
    started = asyncio.Event()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await asyncio.sleep(10)
        await asyncio.sleep(0)  # a real call suspends, so the rest join it
        return "answer"

    leader = asyncio.create_task(dedup.run("k", fetch))
    await started.wait()
    followers = [asyncio.create_task(dedup.run("k", fetch)) for _ in range(10)]
    await asyncio.sleep(0)
    leader.cancel()
    async with asyncio.timeout(2):
        results = await asyncio.gather(*followers)
    assert results == ["answer"] * 10
    assert calls == 2  # the cancelled one, then one follower for all the others
    assert leader.cancelled()
    assert dedup.in_flight == 0


async def test_a_cancelled_follower_does_not_cancel_the_leader() -> None:
    """Cancelling one waiter leaves the shared call and the other waiters alone."""
    dedup: RequestDeduplicator[str] = RequestDeduplicator()
    gate = asyncio.Event()

    async def fetch() -> str:
        await gate.wait()
        return "answer"

    leader = asyncio.create_task(dedup.run("k", fetch))
    await asyncio.sleep(0)
    follower = asyncio.create_task(dedup.run("k", fetch))
    other = asyncio.create_task(dedup.run("k", fetch))
    await asyncio.sleep(0)
    follower.cancel()
    gate.set()
    assert await leader == "answer"
    assert await other == "answer"
    with pytest.raises(asyncio.CancelledError):
        await follower


async def test_failures_reach_every_waiter_and_the_next_call_retries() -> None:
    """A failed shared call fails all its waiters once; the next call runs afresh."""
    dedup: RequestDeduplicator[str] = RequestDeduplicator(ttl_s=60)
    gate = asyncio.Event()
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 1:
            raise OSError("down")
        return "up"

    tasks = [asyncio.create_task(dedup.run("k", fetch)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert await dedup.run("k", fetch) == "up"
    assert calls == 2


@dataclass(frozen=True)
class Query:
    """A request object with fields."""

    symbol: str
    depth: int


def test_request_keys_keep_apart_what_differs() -> None:
    """1, 1.0, True and "1" differ; so do list and tuple, and dataclasses by field."""
    distinct = [
        request_key(1),
        request_key(1.0),
        request_key(True),
        request_key("1"),
        request_key(None),
        request_key([1, 2]),
        request_key((1, 2)),
        request_key({"a": 1}),
        request_key(a=1),
        request_key(Query("BTC", 5)),
        request_key(Query("BTC", 6)),
        request_key(b"\x01"),
    ]
    assert len(set(distinct)) == len(distinct)
    assert request_key(a=1, b=2) == request_key(b=2, a=1)
    assert request_key({"x": 1, "y": 2}) == request_key({"y": 2, "x": 1})
    assert request_key({3, 1, 2}) == request_key({1, 2, 3})


@settings(max_examples=200, deadline=None)
@given(
    a=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    ),
    b=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=6,
    ),
)
def test_equal_keys_only_for_equal_arguments(a: object, b: object) -> None:
    """Two argument values share a key exactly when they are equal and of the same types."""
    same = repr(a) == repr(b)
    assert (request_key(a) == request_key(b)) == same


async def test_call_keys_on_the_function_and_its_arguments() -> None:
    """call() shares results between identical calls only, per function."""
    dedup: RequestDeduplicator[str] = RequestDeduplicator(ttl_s=60)
    runs: list[str] = []

    async def price(symbol: str, venue: str = "x") -> str:
        runs.append(f"price:{symbol}:{venue}")
        return f"{symbol}@{venue}"

    async def volume(symbol: str, venue: str = "x") -> str:
        runs.append(f"volume:{symbol}:{venue}")
        return f"vol {symbol}@{venue}"

    assert await dedup.call(price, "BTC", venue="a") == "BTC@a"
    assert await dedup.call(price, "BTC", venue="a") == "BTC@a"
    assert await dedup.call(price, "BTC", venue="b") == "BTC@b"
    assert await dedup.call(volume, "BTC", venue="a") == "vol BTC@a"
    assert runs == ["price:BTC:a", "price:BTC:b", "volume:BTC:a"]
    dedup.clear()
    assert len(dedup) == 0


async def test_batcher_under_load_keeps_every_result_with_its_caller() -> None:
    """1,000 concurrent submits come back with their own results in batches of <= max_size."""
    sizes: list[int] = []

    async def double(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return [i * 2 for i in items]

    batcher: DynamicBatcher[int, int] = DynamicBatcher(double, max_size=64, max_wait_s=0.001)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(1_000)))
    assert results == [i * 2 for i in range(1_000)]
    assert max(sizes) <= 64
    assert sum(sizes) == 1_000
    await batcher.shutdown()


async def test_batcher_processor_error_fails_every_caller_of_that_batch() -> None:
    """A processor that raises fails each caller of its batch with that error."""

    async def broken(_items: list[int]) -> list[int]:
        raise OSError("backend down")

    batcher: DynamicBatcher[int, int] = DynamicBatcher(broken, max_size=3, max_wait_s=60)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)


async def test_batcher_shutdown_deadline_cancels_a_stuck_batch() -> None:
    """A batch still running at the shutdown deadline is cancelled; its callers get BatchError."""
    started = asyncio.Event()

    async def stuck(items: list[int]) -> list[int]:
        started.set()
        await asyncio.sleep(10)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(stuck, max_size=2, max_wait_s=60)
    callers = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
    await started.wait()
    async with asyncio.timeout(2):
        await batcher.shutdown(timeout_s=0.005)
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, BatchError) for r in results)
    assert batcher.closed
    await batcher.shutdown()  # twice is harmless


async def test_batcher_flush_sends_a_partial_batch_now() -> None:
    """flush() sends what is pending without waiting for size or time."""
    batches: list[list[str]] = []

    async def echo(items: list[str]) -> list[str]:
        batches.append(items)
        return items

    batcher: DynamicBatcher[str, str] = DynamicBatcher(echo, max_size=10, max_wait_s=60)
    task = asyncio.create_task(batcher.submit("a"))
    await asyncio.sleep(0)
    assert batcher.pending == 1
    batcher.flush()
    assert await task == "a"
    assert batches == [["a"]]


async def test_bulkhead_waiter_is_refused_after_max_wait() -> None:
    """A waiter that gets no slot within max_wait_s is refused and counted."""
    bulkhead = Bulkhead("dep", max_concurrent=1, max_waiting=5, max_wait_s=0.005)
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    holder = asyncio.create_task(bulkhead.call(hold))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):
        await bulkhead.call(hold)
    assert bulkhead.rejected == 1
    assert bulkhead.waiting == 0
    gate.set()
    await holder
    assert bulkhead.active == 0


async def test_bulkhead_cancelled_waiter_leaves_the_queue_and_slots_balance() -> None:
    """Cancelled waiters leave the queue; after everything the bulkhead is empty."""
    bulkhead = Bulkhead("dep", max_concurrent=2, max_waiting=100)
    gate = asyncio.Event()
    ran = 0

    async def work() -> None:
        nonlocal ran
        await gate.wait()
        ran += 1

    tasks = [asyncio.create_task(bulkhead.call(work)) for _ in range(50)]
    await asyncio.sleep(0)
    assert (bulkhead.active, bulkhead.waiting) == (2, 48)
    for task in tasks[10:30]:
        task.cancel()
    await asyncio.sleep(0)
    assert bulkhead.waiting == 28
    gate.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert ran == 30
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)
    with pytest.raises(ValueError, match="max_wait_s"):
        Bulkhead("x", max_concurrent=1, max_wait_s=0)
