"""The idempotency claim is renewed while a handler runs: no handler outlives its claim."""

from __future__ import annotations

import asyncio

from common.bus.router import Emit, Router
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineEntryAdded, QuarantineRequested
from tests.integration.bus.conftest import Rig, close_connections_of, fast_settings, until

_LEASE_S = 1.0


def _request() -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id="m1", reason="slow", requested_by="t")


async def test_handler_longer_than_the_lease_while_the_channel_drops_runs_once(rig: Rig) -> None:
    """A handler runs over 3.5 leases; its consume connection is closed under it, the broker
    redelivers the event, and the copies wait on the renewed claim: the handler runs once, its
    one output event (one id) is published, and nothing is dead-lettered."""
    rig.settings = fast_settings(handler_timeout_s=60)  # the lease, not the timeout, is tested
    broker = await rig.broker()
    calls: list[str] = []
    outputs: list[str] = []
    dropped = asyncio.Event()

    async def handler(event: Envelope[QuarantineRequested]) -> Emit:
        calls.append(event.id)
        await dropped.wait()  # rabbitmqctl may take seconds: run on past the drop regardless
        await asyncio.sleep(_LEASE_S * 3.5)
        added = QuarantineEntryAdded(
            record_id="r1",
            kind="ai_model",
            entity_id="m1",
            reason="slow",
            severity="warning",
            expires_at=None,
        )
        return [new_event("quarantine.entry.added", added, source="it", causation=event)]

    async def collect(event: Envelope[QuarantineEntryAdded]) -> Emit:
        outputs.append(event.id)
        return []

    router = Router()
    router.add(QuarantineRequested, handler)
    router.add(QuarantineEntryAdded, collect)
    await rig.pipeline(broker, router, lease_s=_LEASE_S)
    event = new_event("quarantine.requested", _request(), source="it")
    await rig.publisher(broker).publish(event)
    await until(lambda: calls == [event.id])
    assert await close_connections_of(f"{broker.name}.consume") == 1
    dropped.set()
    # The original settles (its ack is stale) and so does the redelivered copy: acked as a
    # duplicate, or, had it come between outbox and done, re-publishing the same output.
    await until(lambda: rig.count("ack") + rig.count("duplicate") >= 2, within=15)
    await until(lambda: len(outputs) >= 1, within=5)
    assert calls == [event.id]
    assert len(set(outputs)) == 1  # one output event, whatever copies of it went out
    assert rig.count("retry") >= 1  # the redelivered copy waited on the live lease
    assert rig.dead == []


async def test_a_lost_claim_cancels_the_handler(rig: Rig) -> None:
    """When another holder takes the claim (here: the key is overwritten), the renewal finds it
    gone and cancels the handler instead of letting it run beside the new holder."""
    broker = await rig.broker()
    started = asyncio.Event()
    finished: list[str] = []

    async def handler(event: Envelope[QuarantineRequested]) -> Emit:
        started.set()
        await asyncio.sleep(_LEASE_S * 5)
        finished.append(event.id)
        return []

    router = Router()
    router.add(QuarantineRequested, handler)
    pipeline = await rig.pipeline(broker, router, lease_s=_LEASE_S)
    event = new_event("quarantine.requested", _request(), source="it")
    await rig.publisher(broker).publish(event)
    await asyncio.wait_for(started.wait(), 5)
    key = f"{rig.prefix}idem:{rig.worker}:{event.id}"
    await rig.redis.set(key, b"processing:someone-else", px=round(_LEASE_S * 1000))
    await until(lambda: rig.count("retry") >= 1, within=5)
    assert finished == []
    assert pipeline.idempotency is not None
    assert pipeline.idempotency.lease_s == _LEASE_S
