"""The local quarantine view other workers keep from quarantine events."""

from __future__ import annotations

import fakeredis
import pytest

from common.bus.router import Router
from common.quarantine_view import QUARANTINE_BASE, QuarantineView
from common.store import Store
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineEntryAdded, QuarantineEntryReleased
from workers.quarantine.keys import Keys
from workers.quarantine.repository import Repository


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _added(
    record: str, entity: str = "gpt-x", *, kind: str = "ai_model", expires_at: float | None = None
) -> Envelope[QuarantineEntryAdded]:
    data = QuarantineEntryAdded(
        record_id=record,
        kind=kind,
        entity_id=entity,
        reason="errors",
        severity="critical",
        expires_at=expires_at,
    )
    return new_event("quarantine.entry.added", data, source="quarantine")


def _released(record: str, entity: str = "gpt-x") -> Envelope[QuarantineEntryReleased]:
    data = QuarantineEntryReleased(
        record_id=record, kind="ai_model", entity_id=entity, released_by="op"
    )
    return new_event("quarantine.entry.released", data, source="quarantine")


async def test_added_then_released() -> None:
    """An added entity is quarantined until the release naming its record arrives."""
    view = QuarantineView()
    await view.on_added(_added("r1"))
    assert view.is_quarantined("ai_model", "gpt-x")
    assert not view.is_quarantined("ai_model", "other")
    await view.on_released(_released("r1"))
    assert not view.is_quarantined("ai_model", "gpt-x")


async def test_expiry_honoured_without_release_event() -> None:
    """An entry whose TTL passed is free at once, before any release event."""
    clock = Clock()
    view = QuarantineView(now=clock)
    await view.on_added(_added("r1", expires_at=1_010.0))
    assert view.is_quarantined("ai_model", "gpt-x")
    clock.now = 1_010.0
    assert not view.is_quarantined("ai_model", "gpt-x")
    assert view.quarantined() == []


async def test_stale_release_does_not_unblock_newer_record() -> None:
    """A release of an older record leaves a newer block of the same entity in place."""
    view = QuarantineView()
    await view.on_added(_added("new"))
    await view.on_released(_released("old"))
    assert view.is_quarantined("ai_model", "gpt-x")


async def test_release_overtaking_added_leaves_tombstone() -> None:
    """A release delivered before its own added keeps the late added from blocking."""
    view = QuarantineView()
    await view.on_released(_released("r1"))
    await view.on_added(_added("r1"))
    assert not view.is_quarantined("ai_model", "gpt-x")


async def test_message_records_are_ignored() -> None:
    """Dead-message records (kind message) never enter the view."""
    view = QuarantineView()
    await view.on_added(_added("r1", "abc", kind="message"))
    assert view.snapshot() == []


async def _block(repo: Repository, record: str, entity: str, expires_at: float | None) -> None:
    await repo.add_entity(
        record_id=record,
        kind="ai_model",
        entity_id=entity,
        reason="errors",
        detail="d",
        severity="critical",
        evidence={},
        requested_by="t",
        expires_at=expires_at,
        now=900.0,
    )


async def test_resync_reads_the_quarantine_blacklist() -> None:
    """resync() rebuilds the view from the quarantine worker's blacklist in Redis: what it
    missed is added, what is no longer blocked is dropped, and listeners hear both."""
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    repo = Repository(store)
    await _block(repo, "r1", "gpt-x", None)
    await _block(repo, "r2", "claude", 2_000.0)
    seen: list[tuple[str, str, bool]] = []
    view = QuarantineView(store=store, owner="ai_fallback", now=Clock())
    view.add_listener(lambda k, i, b: seen.append((k, i, b)))
    await view.on_added(_added("r9", "stale-model"))
    assert await view.resync() == 2
    assert view.is_quarantined("ai_model", "gpt-x")
    assert view.is_quarantined("ai_model", "claude")
    assert not view.is_quarantined("ai_model", "stale-model")
    assert ("ai_model", "stale-model", False) in seen
    assert ("ai_model", "claude", True) in seen


def test_view_reads_the_quarantine_workers_keys() -> None:
    """The view's copy of the quarantine key layout is the quarantine worker's own."""
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    assert Keys(store).blacklist == store.key(*QUARANTINE_BASE) + ":bl"
    assert Keys(store).record("x") == store.key(*QUARANTINE_BASE) + ":rec:x"


def test_register_binds_both_types() -> None:
    """register() adds broadcast handlers for quarantine.entry.added and .released."""
    router = Router()
    QuarantineView().register(router)
    assert router.event_types == ["quarantine.entry.added", "quarantine.entry.released"]
    assert router.broadcast_types == router.event_types


def test_bad_configuration_is_refused() -> None:
    """A persisted view without an owner, or an unknown kind, is a clear error."""
    with pytest.raises(ValueError, match="owner"):
        QuarantineView(store=Store(fakeredis.FakeAsyncRedis()))
    with pytest.raises(ValueError, match="not entity kinds"):
        QuarantineView(kinds={"message"})


async def test_listener_told_of_changes() -> None:
    """Listeners hear each block and unblock."""
    seen: list[tuple[str, str, bool]] = []
    view = QuarantineView()
    view.add_listener(lambda k, i, b: seen.append((k, i, b)))
    await view.on_added(_added("r1"))
    await view.on_released(_released("r1"))
    assert seen == [("ai_model", "gpt-x", True), ("ai_model", "gpt-x", False)]
