"""The idempotency claim as a lease: tokens, renewal, fenced release (fakeredis with Lua)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.bus.idempotency import ClaimLost, ClaimState, Idempotency
from common.reliability.guard import Guards
from common.store import Store

T = TypeVar("T")


def _idempotency(redis: fakeredis.FakeAsyncRedis, lease_s: float = 1.0) -> Idempotency:
    return Idempotency(Store(redis, prefix="t:"), worker="w", lease_s=lease_s, done_ttl_s=60)


async def test_renewal_extends_only_our_own_lease() -> None:
    """renew() pushes our lease out again; once another holder owns the key it refuses."""
    redis = fakeredis.FakeAsyncRedis()
    idem = _idempotency(redis)
    assert (await idem.claim("e1")).state is ClaimState.NEW
    await redis.pexpire("t:idem:w:e1", 100)
    assert await idem.renew("e1")
    assert await redis.pttl("t:idem:w:e1") > 500
    await redis.set("t:idem:w:e1", b"processing:someone-else")
    assert not await idem.renew("e1")
    assert (await idem.claim("e1")).state is ClaimState.BUSY


async def test_release_deletes_the_claim_only_while_it_is_ours() -> None:
    """After a failure the claim is released, unless another holder has it by then."""
    redis = fakeredis.FakeAsyncRedis()
    idem = _idempotency(redis)
    await idem.claim("mine")
    await idem.release("mine")
    assert await redis.exists("t:idem:w:mine") == 0
    await idem.claim("taken")
    await redis.set("t:idem:w:taken", b"processing:someone-else")
    await idem.release("taken")
    assert await redis.get("t:idem:w:taken") == b"processing:someone-else"


async def test_hold_cancels_the_handler_when_the_claim_is_taken() -> None:
    """A handler holding its claim is cancelled with ClaimLost once the claim is taken."""
    redis = fakeredis.FakeAsyncRedis()
    idem = _idempotency(redis, lease_s=1.0)
    await idem.claim("e1")

    async def handler() -> None:
        async with idem.hold("e1"):
            await redis.set("t:idem:w:e1", b"processing:someone-else")
            await asyncio.sleep(5)

    with pytest.raises(ClaimLost):
        await asyncio.wait_for(handler(), 3)


async def test_hold_keeps_a_long_handler_claimed() -> None:
    """A handler running one and a half leases keeps its claim: still ours at the end."""
    redis = fakeredis.FakeAsyncRedis()
    idem = _idempotency(redis, lease_s=1.0)
    await idem.claim("e1")
    async with idem.hold("e1"):
        await asyncio.sleep(1.5)  # past the lease: only the renewal keeps it
    value = await redis.get("t:idem:w:e1")
    assert isinstance(value, bytes)
    assert value.startswith(b"processing:")
    assert await idem.renew("e1")


class _LostReply(Store):
    """Runs the first guarded operation, then loses its reply (as a connection dying while
    the replies are read does): the guard retries it."""

    lost = False

    async def execute(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        async def lossy(client: Redis) -> T:
            result = await op(client)
            if not self.lost:
                self.lost = True
                raise RedisConnectionError("connection lost while reading the replies")
            return result

        return await super().execute(lossy)


async def test_a_claim_retried_after_its_reply_was_lost_is_still_ours() -> None:
    """The guard retries the batch with the same token: the claim it finds is its own, so the
    handler runs now instead of the event waiting out its lease as if another holder had it."""
    redis = fakeredis.FakeAsyncRedis()
    guards = Guards()
    guards.instant()
    store = _LostReply(redis, prefix="t:", guard=guards.guard("redis"))
    idem = Idempotency(store, worker="w", lease_s=30, done_ttl_s=60)
    assert (await idem.claim("e1")).state is ClaimState.NEW
    assert store.lost
    value = await redis.get("t:idem:w:e1")
    assert isinstance(value, bytes)
    assert value.startswith(b"processing:")
    assert (await idem.claim("e1")).state is ClaimState.BUSY  # another claim is another holder
