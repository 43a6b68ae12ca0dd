"""``quarantine.discard.requested``: an operator discards a dead message by publishing an event."""

from __future__ import annotations

from typing import Any

from common.testing import run_workers
from schemas.envelope import Actor
from schemas.quarantine import QuarantineDiscardRequested, QuarantineReleaseRequested
from tests.unit.quarantine.conftest import (
    POISON_TYPE,
    Clock,
    factories,
    poison_payload,
    settings,
    until,
)

OPERATOR = Actor(subject="alice", role="operator")


async def test_discard_requested_discards_once_and_a_release_is_then_refused() -> None:
    """The record is discarded by the actor; a second discard and a release are refused."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        await env.publish(POISON_TYPE, poison_payload())
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        record_id = added.data.record_id
        request = QuarantineDiscardRequested(record_id=record_id, note="bad data")
        await env.publish("quarantine.discard.requested", request, actor=OPERATOR)
        discarded = await env.wait_for("quarantine.entry.discarded")
        assert (discarded.data.record_id, discarded.data.discarded_by) == (record_id, "alice")
        await env.publish("quarantine.discard.requested", request, actor=OPERATOR)
        release = QuarantineReleaseRequested(record_id=record_id)
        await env.publish("quarantine.release.requested", release, actor=OPERATOR)
        await until(lambda: len(env.emitted("quarantine.release.refused")) == 2)
        await env.settle()
        assert len(env.emitted("quarantine.entry.discarded")) == 1
        assert not env.emitted("quarantine.entry.released")
        record = await holder["quarantine"].repo.get(record_id)
        assert record is not None
        assert record["status"] == "discarded"


async def test_discard_requested_by_a_viewer_is_dead_lettered_unauthorized() -> None:
    """A plain user's discard request changes nothing and is itself quarantined as unauthorized."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        await env.publish(POISON_TYPE, poison_payload())
        added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
        request = QuarantineDiscardRequested(record_id=added.data.record_id)
        await env.publish(
            "quarantine.discard.requested", request, actor=Actor(subject="bob", role="user")
        )
        await until(
            lambda: env.metrics.quarantine.added.labels("message", "unauthorized")._value.get() == 1
        )
        record = await holder["quarantine"].repo.get(added.data.record_id)
        assert record is not None
        assert record["status"] == "quarantined"
