"""Request/reply over RabbitMQ's direct reply-to."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from common.bus.router import Emit, Router
from common.bus.rpc import request
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested
from tests.integration.bus.conftest import Rig


def _request(entity: str) -> QuarantineRequested:
    return QuarantineRequested(kind="ai_model", entity_id=entity, reason="ok", requested_by="t")


async def _answer(event: Envelope[QuarantineRequested]) -> Emit:
    out = QuarantineReleaseRequested(record_id=f"r-{event.data.entity_id}")
    return [new_event("quarantine.release.requested", out, source="it", causation=event)]


async def test_request_gets_its_own_reply(rig: Rig) -> None:
    """Concurrent requests each get the reply caused by them, from another process's broker."""
    responder = await rig.broker("responder")
    router = Router()
    router.add(QuarantineRequested, _answer, reply=True)
    await rig.pipeline(responder, router)
    requester = rig.publisher(await rig.broker("requester"))
    events = [new_event("quarantine.requested", _request(f"m{n}"), source="it") for n in range(5)]
    replies = await asyncio.gather(*(request(requester, e, timeout_s=5) for e in events))
    for event, reply in zip(events, replies, strict=True):
        assert reply.type == "quarantine.release.requested"
        assert reply.causation_id == event.id
        assert reply.data.record_id == f"r-{event.data.entity_id}"


async def test_request_without_responder_times_out(rig: Rig) -> None:
    """No worker answers: TimeoutError after the timeout, and the broker stays usable."""
    broker = await rig.broker()
    await rig.declare(broker, ["quarantine.requested"])
    publisher = rig.publisher(broker)
    event = new_event("quarantine.requested", _request("m1"), source="it")
    with pytest.raises(TimeoutError):
        await request(publisher, event, timeout_s=0.3)
    await publisher.publish(event)


async def test_delivered_reply_is_not_reported_undeliverable(rig: Rig) -> None:
    """A reply RabbitMQ delivers to direct reply-to is not also returned and logged as lost."""
    responder = await rig.broker("responder")
    router = Router()
    router.add(QuarantineRequested, _answer, reply=True)
    await rig.pipeline(responder, router)
    requester = rig.publisher(await rig.broker("requester"))
    with capture_logs() as logs:
        reply = await request(
            requester, new_event("quarantine.requested", _request("m1"), source="it"), timeout_s=5
        )
        await asyncio.sleep(0.05)  # a basic.return would come right after the confirm
    assert reply.data.record_id == "r-m1"
    assert [e for e in logs if e["event"] == "reply.undeliverable"] == []
