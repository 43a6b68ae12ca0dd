"""RedisBatch: commands of one tick share a pipeline; while pipelines are out, the rest wait
and go together; each caller gets its own reply or error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from common.bus.redis_batch import RedisBatch
from common.store import Store

T = TypeVar("T")


class CountingStore(Store):
    """Counts pipelines (one ``execute`` each) and their sizes; can hold them or fail them."""

    def __init__(self) -> None:
        super().__init__(fakeredis.FakeAsyncRedis(), prefix="t:")
        self.sizes: list[int] = []
        self.gate: asyncio.Event | None = None
        self.fail_next = False

    async def execute(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        if self.fail_next:
            self.fail_next = False
            raise RedisConnectionError("server went away")
        if self.gate is not None:
            await self.gate.wait()
        client = self.client

        class Spy:
            def pipeline(inner, transaction: bool = True) -> Any:  # noqa: N805 - a spy
                pipe = client.pipeline(transaction=transaction)
                original = pipe.execute

                async def execute(**kwargs: Any) -> Any:
                    self.sizes.append(len(pipe.command_stack))
                    return await original(**kwargs)

                pipe.execute = execute  # type: ignore[method-assign, assignment]
                return pipe

        return await op(Spy())  # type: ignore[arg-type]


def _set(key: str) -> Callable[[Any], object]:
    return lambda p: p.set(key, b"x")


async def test_commands_of_one_tick_share_one_pipeline_in_order_with_their_own_errors() -> None:
    store = CountingStore()
    batch = RedisBatch(store)
    await store.client.set("t:text", b"not a number")
    replies = await asyncio.gather(
        batch.execute(lambda p: p.set("t:a", b"1")),
        batch.execute(lambda p: p.incr("t:text")),
        batch.execute(lambda p: p.get("t:a")),
        return_exceptions=True,
    )
    assert replies[0] is True
    assert isinstance(replies[1], ResponseError)
    assert replies[2] == b"1"
    assert store.sizes == [3]


async def test_commands_issued_while_pipelines_are_out_go_together_when_one_returns() -> None:
    store = CountingStore()
    store.gate = asyncio.Event()
    batch = RedisBatch(store, max_in_flight=1)
    first = asyncio.ensure_future(batch.execute(lambda p: p.set("t:k0", b"0")))
    await asyncio.sleep(0)  # the first pipeline is out (held at the gate)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batch.execute(_set(f"t:k{i}"))) for i in range(1, 6)]
    for _ in range(5):  # several ticks pass: nothing more is sent while one is out
        await asyncio.sleep(0)
    assert store.sizes == []
    store.gate.set()
    assert await first is True
    assert await asyncio.gather(*later) == [True] * 5
    assert store.sizes == [1, 5]


async def test_an_idle_batch_sends_at_once_and_a_large_one_is_split() -> None:
    store = CountingStore()
    batch = RedisBatch(store, max_batch=4, max_in_flight=1)
    assert await batch.execute(lambda p: p.set("t:solo", b"1")) is True
    assert store.sizes == [1]
    replies = await asyncio.gather(*(batch.execute(lambda p: p.ping()) for _ in range(10)))
    assert replies == [True] * 10
    assert store.sizes == [1, 4, 4, 2]


async def test_a_failed_pipeline_fails_each_of_its_callers_and_the_next_one_runs() -> None:
    store = CountingStore()
    batch = RedisBatch(store)
    store.fail_next = True
    results = await asyncio.gather(
        batch.execute(lambda p: p.set("t:a", b"1")),
        batch.execute(lambda p: p.set("t:b", b"2")),
        return_exceptions=True,
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert await batch.execute(lambda p: p.get("t:a")) is None  # nothing was written
    await store.client.set("t:s", b"x")
    with pytest.raises(ResponseError):
        await batch.execute(lambda p: p.incr("t:s"))
