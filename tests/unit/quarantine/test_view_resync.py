"""Replicas of one worker share the persisted view: resync brings a replica that did not
consume a broadcast up to date, and never swaps in a read older than its own change."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis

from common.quarantine_view import QuarantineView
from common.store import Store
from schemas.envelope import new_event
from schemas.quarantine import QuarantineEntryReleased
from tests.unit.quarantine.test_view import _added


def _replicas() -> tuple[QuarantineView, QuarantineView]:
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    return QuarantineView(store=store, owner="w"), QuarantineView(store=store, owner="w")


async def test_a_replica_learns_a_block_and_its_release_by_resync() -> None:
    """The replica that missed both broadcasts follows them, telling its listeners."""
    consumer, other = _replicas()
    changes: list[tuple[str, str, bool]] = []
    other.add_listener(lambda kind, entity, blocked: changes.append((kind, entity, blocked)))
    await consumer.on_added(_added("r1", "mallory", kind="producer"))
    assert not other.is_quarantined("producer", "mallory")
    assert await other.resync()
    assert other.is_quarantined("producer", "mallory")
    released = QuarantineEntryReleased(
        record_id="r1", kind="producer", entity_id="mallory", released_by="op"
    )
    await consumer.on_released(new_event("quarantine.entry.released", released, source="q"))
    assert await other.resync()
    assert not other.is_quarantined("producer", "mallory")
    assert changes == [("producer", "mallory", True), ("producer", "mallory", False)]


async def test_resync_never_drops_a_change_made_during_its_read() -> None:
    """A broadcast handled while the hash is being read wins; the swap waits a round."""
    consumer, _ = _replicas()
    real = consumer._read
    started = asyncio.Event()
    proceed = asyncio.Event()

    async def slow_read(store: Any) -> Any:
        snapshot = await real(store)
        started.set()
        await proceed.wait()
        return snapshot

    consumer._read = slow_read  # type: ignore[method-assign]
    resync = asyncio.create_task(consumer.resync())
    await started.wait()
    await consumer.on_added(_added("r2", "eve", kind="producer"))
    proceed.set()
    assert not await resync
    assert consumer.is_quarantined("producer", "eve")
