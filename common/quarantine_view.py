"""A worker's local view of quarantined entities: ``is_quarantined(kind, id)`` with no Redis
round trip per call.

The quarantine worker owns the blacklist. Every other worker learns of it only through two
events, ``quarantine.entry.added`` and ``quarantine.entry.released``, and keeps this view.

Every worker has one: :class:`common.service.BaseService` creates it as ``self.quarantine``
(registered on the worker's router, so its queue is bound to both types) and the runtime loads
it before consuming and refuses events of blocked producers (``producer_blocked``). A worker
uses it for other kinds too::

    class AiFallback(BaseService):
        def __init__(self, ctx: WorkerContext) -> None:
            super().__init__(ctx)  # self.quarantine exists and is registered

        async def on_request(self, event: ...) -> ...:
            if self.quarantine.is_quarantined("ai_model", model_name):
                ...  # skip this model

What it guarantees:

* ``is_quarantined`` is a dict lookup: no await, no I/O. Expiry is honoured on every call
  (``expires_at`` against the injectable ``clock``), so an entity whose TTL passed is free
  even before the quarantine worker's ``quarantine.entry.released`` arrives.
* Only entity kinds are tracked (``ai_model``, ``exchange_source``, ``producer``,
  ``strategy``, ``event_type``); records of single dead messages (kind ``message``) are
  ignored, so a flood of dead letters never grows the view. Pass ``kinds=`` to track fewer.
* Durable across restarts: with a ``store`` the view writes each change to a hash in the
  OWNER's namespace (``<prefix><owner>:quarantine_view``) inside the event handler (so the
  pipeline acks only after it is written) and :meth:`load` reads it back at start. Without a
  store it is memory-only (tests).
* Order-safe: events carry the quarantine record id. A release removes the entry only if it
  names the record the view holds; a release that overtakes its own ``added`` leaves a
  tombstone so the late ``added`` is ignored. Re-announcements (the quarantine worker
  re-publishes ``quarantine.entry.added`` for every active entry every few minutes, so a
  worker deployed later still learns the list) simply overwrite the entry.

``Router.add`` refuses a second handler for a type: a worker must not register its own
handlers for the two types nor a second view (use :meth:`add_listener` to be told of changes).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import Any

from common.bus.router import Router
from common.logging import get_logger
from common.store import Store
from schemas.envelope import Envelope
from schemas.quarantine import ENTITY_KINDS, QuarantineEntryAdded, QuarantineEntryReleased

__all__ = ["ENTITY_KINDS", "QuarantineView", "ViewEntry"]

_SEP = "\x1f"
_MAX_TOMBSTONES = 10_000
_log = get_logger("eventguard.quarantine_view")

Listener = Callable[[str, str, bool], None]


@dataclass(frozen=True, slots=True)
class ViewEntry:
    """One blocked entity as this worker knows it."""

    record_id: str
    kind: str
    entity_id: str
    reason: str
    severity: str
    expires_at: float | None  # epoch seconds; None = until released

    def active(self, now: float) -> bool:
        """True while the block holds at ``now``."""
        return self.expires_at is None or now < self.expires_at


class QuarantineView:
    """The quarantined entities one worker must skip, kept from quarantine events."""

    def __init__(
        self,
        *,
        store: Store | None = None,
        owner: str = "",
        kinds: Collection[str] = ENTITY_KINDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if store is not None and not owner:
            raise ValueError("a persisted QuarantineView needs its owner worker's name")
        unknown = set(kinds) - ENTITY_KINDS
        if unknown:
            raise ValueError(f"not entity kinds: {sorted(unknown)}")
        self._store = store
        self._key = store.key(owner, "quarantine_view") if store is not None else ""
        self._kinds = frozenset(kinds)
        self._clock = clock
        self._entries: dict[tuple[str, str], ViewEntry] = {}
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._listeners: list[Listener] = []
        self._version = 0  # moved by every change a broadcast makes (see resync)
        self._writing = 0  # persists in flight

    # -- wiring --------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Handle ``quarantine.entry.added`` and ``quarantine.entry.released`` on ``router``."""
        router.add("quarantine.entry.added", self.on_added)
        router.add("quarantine.entry.released", self.on_released)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(kind, entity_id, quarantined)`` whenever an entry changes."""
        self._listeners.append(listener)

    async def load(self) -> int:
        """Read the persisted view (call in ``start``); returns the entries loaded."""
        if self._store is None:
            return 0
        self._entries.update(await self._read(self._store))
        return len(self._entries)

    async def resync(self) -> bool:
        """Replace the view with the persisted one: replicas of a worker share the hash, but
        only the replica that consumed a broadcast has it in memory. Skipped (False) when a
        broadcast changed this view during the read; the next round catches up."""
        if self._store is None:
            return False
        version = self._version
        persisted = await self._read(self._store)
        if version != self._version or self._writing:
            return False
        previous, self._entries = self._entries, persisted
        for kind, entity_id in previous.keys() | persisted.keys():
            if previous.get((kind, entity_id)) != persisted.get((kind, entity_id)):
                self._notify(kind, entity_id)
        return True

    async def _read(self, store: Store) -> dict[tuple[str, str], ViewEntry]:
        key = self._key
        raw: dict[Any, Any] = await store.execute(lambda r: r.hgetall(key))
        entries: dict[tuple[str, str], ViewEntry] = {}
        for value in raw.values():
            try:
                entry = ViewEntry(**json.loads(value))
            except (ValueError, TypeError):
                _log.warning("quarantine_view.bad_entry", key=key)
                continue
            entries[(entry.kind, entry.entity_id)] = entry
        return entries

    # -- queries (no I/O) ----------------------------------------------------------------------

    def is_quarantined(self, kind: str, entity_id: str) -> bool:
        """True when ``kind``/``entity_id`` is blocked now (expiry honoured)."""
        entry = self._entries.get((kind, entity_id))
        return entry is not None and entry.active(self._clock())

    def get(self, kind: str, entity_id: str) -> ViewEntry | None:
        """The active entry for ``kind``/``entity_id``, if any."""
        entry = self._entries.get((kind, entity_id))
        return entry if entry is not None and entry.active(self._clock()) else None

    def quarantined(self, kind: str | None = None) -> list[ViewEntry]:
        """Every active entry (of ``kind``), sorted by kind and id."""
        now = self._clock()
        return sorted(
            (e for e in self._entries.values() if e.active(now) and kind in {None, e.kind}),
            key=lambda e: (e.kind, e.entity_id),
        )

    # -- event handlers ------------------------------------------------------------------------

    async def on_added(self, event: Envelope[QuarantineEntryAdded]) -> None:
        """Remember a newly quarantined entity (idempotent; re-announcements overwrite)."""
        data = event.data
        if data.kind not in self._kinds or data.record_id in self._tombstones:
            return
        entry = ViewEntry(
            record_id=data.record_id,
            kind=data.kind,
            entity_id=data.entity_id,
            reason=data.reason[:200],
            severity=data.severity,
            expires_at=data.expires_at,
        )
        self._entries[(entry.kind, entry.entity_id)] = entry
        await self._persist(entry.kind, entry.entity_id)
        self._notify(entry.kind, entry.entity_id)

    async def on_released(self, event: Envelope[QuarantineEntryReleased]) -> None:
        """Forget a released entity if the release names the record this view holds."""
        data = event.data
        if data.kind not in self._kinds:
            return
        self._tombstones[data.record_id] = None
        while len(self._tombstones) > _MAX_TOMBSTONES:
            self._tombstones.popitem(last=False)
        held = self._entries.get((data.kind, data.entity_id))
        if held is None or held.record_id != data.record_id:
            return
        del self._entries[(data.kind, data.entity_id)]
        await self._persist(data.kind, data.entity_id)
        self._notify(data.kind, data.entity_id)

    # -- internals -----------------------------------------------------------------------------

    async def _persist(self, kind: str, entity_id: str) -> None:
        # The version moves before and after the write, and a write in flight is counted:
        # resync never swaps in a hash read that may predate a change already in memory.
        self._version += 1
        if self._store is None:
            return
        key, field = self._key, kind + _SEP + entity_id
        entry = self._entries.get((kind, entity_id))
        self._writing += 1
        try:
            if entry is None:
                await self._store.execute(lambda r: r.hdel(key, field))
            else:
                value = json.dumps(asdict(entry))
                await self._store.execute(lambda r: r.hset(key, field, value))
        finally:
            self._writing -= 1
            self._version += 1

    def _notify(self, kind: str, entity_id: str) -> None:
        blocked = self.is_quarantined(kind, entity_id)
        for listener in self._listeners:
            listener(kind, entity_id, blocked)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every held entry (active or not) as plain dicts, for admin pages and tests."""
        return [asdict(e) for e in self._entries.values()]
