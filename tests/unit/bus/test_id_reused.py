"""An id handled before comes back: the same bytes are a duplicate, other bytes `id_reused`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import fakeredis

from common.bus import headers as h
from common.bus.idempotency import ClaimState, Idempotency, body_digest, is_done
from common.bus.message import OutgoingMessage
from common.bus.publisher import to_message
from common.bus.router import Emit
from common.service import BaseService, WorkerContext
from common.store import Store
from common.testing import run_workers
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineRequested

TYPE = "quarantine.requested"


class Counter(BaseService):
    """Records the entity of every request it handles."""

    name = "counter"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.entities: list[str] = []
        self.router.add(QuarantineRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        self.entities.append(event.data.entity_id)
        return []


def _event(entity: str, event_id: str = "e-1") -> OutgoingMessage:
    data = QuarantineRequested(kind="producer", entity_id=entity, reason="r", requested_by="t")
    return to_message(new_event(TYPE, data, source="t", event_id=event_id), user_id="test")


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_different_event_reusing_a_handled_id_is_dead_lettered() -> None:
    """Same id, other body: not run, not dropped as a duplicate, dead-lettered `id_reused`."""
    services: dict[str, Counter] = {}

    def factory(ctx: WorkerContext) -> Counter:
        services["c"] = Counter(ctx)
        return services["c"]

    async with run_workers([("counter", factory)]) as env:
        counter = services["c"]
        first = _event("p1")
        await env.broker.publish(first)
        await _until(lambda: counter.entities == ["p1"])
        await env.settle()
        await env.broker.publish(first)  # the same bytes again: a duplicate, acked quietly
        await env.settle()
        assert env.dead() == []
        await env.broker.publish(_event("p2"))  # the same id, another event
        await _until(lambda: len(env.dead()) == 1)
        assert counter.entities == ["p1"]
        (dead,) = env.dead()
        assert dead.headers[h.REASON] == "id_reused"
        assert b'"p2"' in dead.body


async def test_the_digest_rides_on_the_claim() -> None:
    """The done marker holds 16 hex digest characters; a claim compares without another call."""
    client = fakeredis.FakeAsyncRedis()
    idem = Idempotency(Store(client, prefix="t:"), worker="w", lease_s=5, done_ttl_s=60)
    digest = body_digest(b"body one")
    assert (await idem.claim("e", digest)).state is ClaimState.NEW
    await idem.done("e", digest)
    assert await client.get("t:idem:w:e") == b"done:" + digest
    assert is_done(await client.get("t:idem:w:e"))
    assert is_done(b"done")
    assert not is_done(b"processing")
    assert len(digest) == 16
    assert (await idem.claim("e", digest)).state is ClaimState.DONE
    assert (await idem.claim("e", body_digest(b"body two"))).state is ClaimState.REUSED
    await client.set("t:idem:w:old", b"done")  # a marker from before digests matches any body
    assert (await idem.claim("old", digest)).state is ClaimState.DONE


async def test_an_outbox_for_another_body_is_not_republished() -> None:
    """An id whose outbox belongs to a different body is refused, not answered with its output."""
    client = fakeredis.FakeAsyncRedis()
    idem = Idempotency(Store(client, prefix="t:"), worker="w", lease_s=5, done_ttl_s=60)
    mine = body_digest(b"mine")
    await idem.claim("e", mine)
    await idem.save_outbox("e", ['{"x": 1}'], mine)
    same = await idem.claim("e", mine)
    assert same.state is ClaimState.OUTBOX
    assert same.outbox == ['{"x": 1}']
    assert (await idem.claim("e", body_digest(b"other"))).state is ClaimState.REUSED
