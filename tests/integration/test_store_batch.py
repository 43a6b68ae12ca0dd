"""Store.execute_batch on the real Redis: hand-encoded RESP, raw replies in order, the same
replies as the pipelined path fakeredis takes, and a batch cut short leaves no stale reply."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.reliability.guard import Guards
from common.store import Arg, Store, connect_redis
from common.testing import forget_prefix


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[Redis, str]]:
    """A client of the Redis under test and a key prefix of this test's own."""
    client = connect_redis(redis_url)
    prefix = f"egtest:batch:{uuid.uuid4().hex[:8]}:"
    yield client, prefix
    await forget_prefix(client, prefix)
    await client.aclose()


def _commands(prefix: str) -> list[list[Arg]]:
    binary = b"a\r\n$3\r\nbody\x00\xff"  # framing bytes inside a value must round-trip
    return [
        ["SET", prefix + "k", binary, "NX", "PX", 60_000, "GET"],
        ["SET", prefix + "k", b"other", "NX", "PX", 60_000, "GET"],
        ["INCR", prefix + "k"],
        ["SET", prefix + "n", 41, "EX", 60],
        ["INCRBYFLOAT", prefix + "n", 0.5],
        ["EVAL", "return {KEYS[1], tonumber(ARGV[1]) + 1}", 1, prefix + "k", 1],
        ["GET", prefix + "missing"],
    ]


def _shape(replies: list[Any]) -> list[Any]:
    return [type(r).__name__ if isinstance(r, Exception) else r for r in replies]


async def test_a_batch_returns_raw_replies_in_order_like_the_pipelined_path(
    redis: tuple[Redis, str],
) -> None:
    """Replies of the packed path: nil, the value before, an error in its place, numbers,
    a script's list; fakeredis (pipelined, callbacks off) answers the same."""
    client, prefix = redis
    packed = await Store(client).execute_batch(_commands(prefix))
    pipelined = await Store(fakeredis.FakeAsyncRedis()).execute_batch(_commands(prefix))
    assert packed[0] is None
    assert packed[1] == b"a\r\n$3\r\nbody\x00\xff"
    assert isinstance(packed[2], ResponseError)
    assert packed[3:5] == [b"OK", b"41.5"]
    assert packed[5] == [(prefix + "k").encode(), 2]
    assert packed[6] is None
    assert _shape(packed) == _shape(pipelined)


async def test_a_batch_cut_short_by_its_timeout_leaves_no_reply_for_the_next(
    redis: tuple[Redis, str],
) -> None:
    """A batch whose reply is late times out; its connection is dropped, so the late reply
    is never read as the next batch's."""
    client, prefix = redis
    guards = Guards()
    guards.instant()
    store = Store(client, guard=guards.guard("redis"), timeout_s=0.05)
    with pytest.raises((RedisTimeoutError, TimeoutError)):
        await store.execute_batch([["BLPOP", prefix + "never", 0.2]])
    await asyncio.sleep(0.25)  # the blocked command's nil reply has been sent by now
    replies = await store.execute_batch(
        [["SET", prefix + "after", b"v"], ["GET", prefix + "after"]]
    )
    assert replies == [b"OK", b"v"]


async def test_the_batch_link_writes_to_the_clients_database(
    redis: tuple[Redis, str], redis_url: str
) -> None:
    """The link selects the URL's database, as the client's pool does: a batch's write is what
    the client reads back, and no other database holds it."""
    client, prefix = redis
    store = Store(client)
    assert await store.execute_batch([["SET", prefix + "db", b"here"]]) == [b"OK"]
    assert await client.get(prefix + "db") == b"here"
    other = connect_redis(redis_url.rsplit("/", 1)[0] + "/0")
    try:
        if client.connection_pool.connection_kwargs.get("db", 0) != 0:
            assert await other.get(prefix + "db") is None
    finally:
        await other.aclose()
        await store.close()


async def test_a_killed_link_fails_its_batch_and_the_next_batch_reconnects(
    redis: tuple[Redis, str],
) -> None:
    """Redis drops the link while a batch waits: that batch fails with ``ConnectionError``
    (its guard retries it), and the next batch opens a new connection."""
    client, prefix = redis
    guards = Guards()
    guards.instant()
    store = Store(client, guard=guards.guard("redis"))
    name = "eg-link-" + prefix.split(":")[-2]
    await store.execute_batch([["CLIENT", "SETNAME", name]])
    waiting = asyncio.ensure_future(store.execute_batch([["BLPOP", prefix + "never", 0.3]]))
    await asyncio.sleep(0.05)
    assert await _kill_named(client, name) == 1
    assert await waiting == [None]  # retried by the guard on a new connection: it times out
    after: list[list[Arg]] = [["SET", prefix + "after", b"v"], ["GET", prefix + "after"]]
    assert await store.execute_batch(after) == [b"OK", b"v"]
    await store.close()


async def _kill_named(client: Redis, name: str) -> int:
    """Kill the connections named ``name``; how many there were."""
    listing: bytes = await client.execute_command("CLIENT", "LIST")  # type: ignore[no-untyped-call]
    ids = [
        line.split(b"id=")[1].split(b" ")[0]
        for line in listing.splitlines()
        if f" name={name} ".encode() in line
    ]
    for client_id in ids:
        await client.execute_command("CLIENT", "KILL", "ID", client_id)  # type: ignore[no-untyped-call]
    return len(ids)
