"""RedisBatch: commands of one tick share a round trip; while batches are out, the rest wait
and go together; each caller gets its own raw reply or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from common.bus.redis_batch import RedisBatch
from common.store import Arg, Store


class CountingStore(Store):
    """Counts batches (one ``execute_batch`` each) and their sizes; can hold them or fail them."""

    def __init__(self) -> None:
        super().__init__(fakeredis.FakeAsyncRedis(), prefix="t:")
        self.sizes: list[int] = []
        self.gate: asyncio.Event | None = None
        self.fail_next = False

    async def execute_batch(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if self.fail_next:
            self.fail_next = False
            raise RedisConnectionError("server went away")
        if self.gate is not None:
            await self.gate.wait()
        self.sizes.append(len(commands))
        return await super().execute_batch(commands)


async def test_commands_of_one_tick_share_one_batch_in_order_with_their_own_errors() -> None:
    """Three commands issued together go as one batch; the failing one alone raises."""
    store = CountingStore()
    batch = RedisBatch(store)
    await store.client.set("t:text", b"not a number")
    replies = await asyncio.gather(
        batch.execute("SET", "t:a", b"1"),
        batch.execute("INCR", "t:text"),
        batch.execute("GET", "t:a"),
        return_exceptions=True,
    )
    assert replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError)
    assert replies[2] == b"1"
    assert store.sizes == [3]


async def test_commands_issued_while_batches_are_out_go_together_when_one_returns() -> None:
    """With one batch in flight, later commands wait and then go out as one batch."""
    store = CountingStore()
    store.gate = asyncio.Event()
    batch = RedisBatch(store, max_in_flight=1)
    first = asyncio.ensure_future(batch.execute("SET", "t:k0", b"0"))
    await asyncio.sleep(0)  # the first batch is out (held at the gate)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batch.execute("SET", f"t:k{i}", b"x")) for i in range(1, 6)]
    for _ in range(5):  # several ticks pass: nothing more is sent while one is out
        await asyncio.sleep(0)
    assert store.sizes == []
    store.gate.set()
    assert await first == b"OK"
    assert await asyncio.gather(*later) == [b"OK"] * 5
    assert store.sizes == [1, 5]


async def test_an_idle_batch_sends_at_once_and_a_large_one_is_split() -> None:
    """A lone command goes at once; more than ``max_batch`` are split in order."""
    store = CountingStore()
    batch = RedisBatch(store, max_batch=4, max_in_flight=1)
    assert await batch.execute("SET", "t:solo", b"1") == b"OK"
    assert store.sizes == [1]
    replies = await asyncio.gather(*(batch.execute("PING") for _ in range(10)))
    assert replies == [b"PONG"] * 10
    assert store.sizes == [1, 4, 4, 2]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_one_runs() -> None:
    """A lost connection fails every caller of that batch; the next batch runs normally."""
    store = CountingStore()
    batch = RedisBatch(store)
    store.fail_next = True
    results = await asyncio.gather(
        batch.execute("SET", "t:a", b"1"),
        batch.execute("SET", "t:b", b"2"),
        return_exceptions=True,
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert await batch.execute("GET", "t:a") is None  # nothing was written
    await store.client.set("t:s", b"x")
    with pytest.raises(ResponseError):
        await batch.execute("INCR", "t:s")


async def test_a_cancelled_caller_leaves_the_others_of_its_batch_their_replies() -> None:
    """Cancelling one waiting caller does not cancel the batch the others share."""
    store = CountingStore()
    store.gate = asyncio.Event()
    batch = RedisBatch(store)
    calls = [asyncio.ensure_future(batch.execute("SET", f"t:c{i}", b"v")) for i in range(3)]
    await asyncio.sleep(0)
    calls[1].cancel()
    store.gate.set()
    assert await calls[0] == b"OK"
    assert await calls[2] == b"OK"
    assert calls[1].cancelled()
