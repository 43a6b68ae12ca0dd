"""The quarantine story in ``eventguard demo``: a poison message is dead-lettered,
quarantined, listed and released live; an entity blocked with a TTL is released at expiry."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from common.bus.message import OutgoingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.testing import Harness
from schemas.envelope import Actor
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested
from workers.quarantine.service import QuarantineService

__all__ = ["prepare", "scenario"]

_POISON = b'{"id": "demo-poison", "type": "quarantine.requested", "data": '  # cut off: not JSON
# Published by the operators' tool user ("operator"), which may assert operator actors: the
# event carries who asked, never a credential.
_OPERATOR = Actor(subject="demo-operator", role="operator")


async def prepare(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
    """No simulator; tick fast so expiry shows within the story."""
    return {"quarantine": {"tick_s": 0.2}}


def _service(env: Harness) -> QuarantineService:
    service = env.runtime.workers["quarantine"].service
    if not isinstance(service, QuarantineService):
        raise TypeError("the quarantine worker is not running")
    return service


async def scenario(env: Harness, say: Callable[[str], None]) -> None:
    """Poison -> eventguard.dead -> record -> list -> release (live) -> discard; TTL expiry."""
    quarantine = _service(env)
    operator = _OPERATOR
    say("quarantine: publishing a truncated (invalid JSON) quarantine.requested")
    await env.broker.publish(
        OutgoingMessage(
            body=_POISON,
            routing_key="quarantine.requested",
            exchange=EVENTS_EXCHANGE,
            type="quarantine.requested",
            user_id="demo-producer",
        )
    )
    added = await env.wait_for(
        "quarantine.entry.added",
        lambda e: e.data.kind == "message" and e.data.reason.startswith("invalid_json"),
        within=10,
    )
    record_id = added.data.record_id
    say(f"quarantine: dead-lettered and recorded as {record_id} ({added.data.reason[:60]})")
    total, rows = await quarantine.repo.search(status="quarantined", kind="message", limit=5)
    say(f"quarantine: list status=quarantined kind=message -> {total} record(s)")
    for row in rows:
        say(f"    {row['id']}  {row['reason']:<16} -> {row['routing_key']}  by {row['producer']}")

    say(f"quarantine: operator asks to release {record_id}")
    request = QuarantineReleaseRequested(record_id=record_id, note="demo: try again")
    await env.publish("quarantine.release.requested", request, actor=operator, user_id="operator")
    released = await env.wait_for(
        "quarantine.entry.released", lambda e: e.data.record_id == record_id, within=10
    )
    say(f"quarantine: re-published once with release id {released.data.release_id}")
    await env.publish("quarantine.release.requested", request, actor=operator, user_id="operator")
    refused = await env.wait_for(
        "quarantine.release.refused", lambda e: e.data.record_id == record_id, within=10
    )
    say(f"quarantine: asking again changes nothing: {refused.data.reason}")
    again = await env.wait_for(
        "quarantine.entry.added",
        lambda e: e.data.kind == "message" and e.id != added.id and "invalid_json" in e.data.reason,
        within=10,
    )
    say(f"quarantine: still poison: died again, recorded afresh as {again.data.record_id}")
    outcome = await quarantine.releaser.discard(
        again.data.record_id, by="demo-operator", note="bad bytes"
    )
    await env.runtime.workers["quarantine"].publisher.publish(outcome.event)
    say(f"quarantine: discarded {again.data.record_id}; it will never be re-published")

    say("quarantine: blocking producer 'demo-flaky' for 2 s")
    block = QuarantineRequested(
        kind="producer", entity_id="demo-flaky", reason="demo", ttl_s=2, requested_by="demo"
    )
    await env.publish("quarantine.requested", block, actor=operator, user_id="operator")
    await env.wait_for("quarantine.entry.added", lambda e: e.data.entity_id == "demo-flaky")
    say(f"quarantine: blocked now? {await quarantine.is_blocked('producer', 'demo-flaky')}")
    expired = await env.wait_for(
        "quarantine.entry.released", lambda e: e.data.entity_id == "demo-flaky", within=10
    )
    say(f"quarantine: TTL passed, released by {expired.data.released_by}")
