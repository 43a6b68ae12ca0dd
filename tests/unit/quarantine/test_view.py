"""The local quarantine view other workers keep from quarantine events."""

from __future__ import annotations

import fakeredis
import pytest

from common.bus.router import Router
from common.quarantine_view import QuarantineView
from common.store import Store
from schemas.envelope import Envelope, new_event
from schemas.quarantine import QuarantineEntryAdded, QuarantineEntryReleased


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
    view = QuarantineView(clock=clock)
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


async def test_persisted_view_survives_restart() -> None:
    """A view with a store reloads what it held before the process restarted."""
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    first = QuarantineView(store=store, owner="ai_fallback")
    await first.on_added(_added("r1"))
    await first.on_added(_added("r2", "claude"))
    await first.on_released(_released("r2", "claude"))
    second = QuarantineView(store=store, owner="ai_fallback")
    assert await second.load() == 1
    assert second.is_quarantined("ai_model", "gpt-x")
    assert not second.is_quarantined("ai_model", "claude")


def test_register_binds_both_types() -> None:
    """register() adds handlers for quarantine.entry.added and quarantine.entry.released."""
    router = Router()
    QuarantineView().register(router)
    assert router.event_types == ["quarantine.entry.added", "quarantine.entry.released"]


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
