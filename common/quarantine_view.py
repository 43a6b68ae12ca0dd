"""A worker's local view of quarantined entities: ``is_quarantined(kind, id)`` with no Redis
round trip per call.

The quarantine worker owns the blacklist. Every other worker learns of it only through two
events, ``quarantine.entry.added`` and ``quarantine.entry.released``, and keeps this view.

Every worker has one: :class:`common.service.BaseService` creates it as ``self.quarantine``
(registered on the worker's router, so its queue is bound to both types) and the runtime loads
it before consuming and refuses events of blocked producers (``producer_blocked``). A worker
uses it for other kinds too::

    class AiFallbackService(BaseService):
        def __init__(self, ctx: WorkerContext) -> None:
            super().__init__(ctx)  # self.quarantine exists and is registered

        async def on_request(self, event: ...) -> ...:
            if self.quarantine.is_quarantined("ai_model", model_name):
                ...  # skip this model

What it guarantees:

* ``is_quarantined`` is a dict lookup: no await, no I/O. Expiry is honoured on every call
  (``expires_at`` against the injectable ``now``), so an entity whose TTL passed is free
  even before the quarantine worker's ``quarantine.entry.released`` arrives.
* Only entity kinds are tracked (``ai_model``, ``exchange_source``, ``producer``,
  ``strategy``, ``event_type``); records of single dead messages (kind ``message``) are
  ignored, so a flood of dead letters never grows the view. Pass ``kinds=`` to track fewer.
* Every replica sees every change: ``register`` binds the two types as *broadcast* routes, so
  each replica of the worker gets its own copy on its own queue (competing consumers on the
  work queue would give each event to one replica only).
* Converges within a bound: :meth:`resync` (called at start and every
  ``EVENTGUARD_RUNTIME__REPLICA_RESYNC_S``, default 10 s, by the runtime) re-reads the
  quarantine worker's blacklist in Redis (``<prefix>quarantine:{q}:bl`` and the records it
  names), the one source of truth. A replica that missed events while its queue was gone (a
  reconnect) holds a stale view for at most one resync period.
* Order-safe: events carry the quarantine record id. A release removes the entry only if it
  names the record the view holds; a release that overtakes its own ``added`` leaves a
  tombstone so the late ``added`` is ignored. Re-announcements (the quarantine worker
  re-publishes ``quarantine.entry.added`` for every active entry every few minutes, so a
  worker deployed later still learns the list) simply overwrite the entry.

``Router.add`` refuses a second handler for a type: a worker must not register its own
handlers for the two types nor a second view (use :meth:`add_listener` to be told of changes).
"""

from __future__ import annotations

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

__all__ = ["ENTITY_KINDS", "QUARANTINE_BASE", "QuarantineView", "ViewEntry"]

_SEP = "\x1f"
_MAX_TOMBSTONES = 10_000
# The quarantine worker's key layout (workers/quarantine/keys.py; a unit test keeps them equal):
# ``<base>bl`` maps kind<US>entity_id to the active record id, ``<base>rec:<id>`` is the record.
QUARANTINE_BASE = ("quarantine", "{q}")
_RECORD_FIELDS = ("kind", "entity_id", "reason", "severity", "expires_at")
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
        now: Callable[[], float] = time.time,
    ) -> None:
        if store is not None and not owner:
            raise ValueError("a persisted QuarantineView needs its owner worker's name")
        unknown = set(kinds) - ENTITY_KINDS
        if unknown:
            raise ValueError(f"not entity kinds: {sorted(unknown)}")
        self._store = store
        self._owner = owner
        self._base = store.key(*QUARANTINE_BASE) + ":" if store is not None else ""
        self._kinds = frozenset(kinds)
        self._now = now
        self._entries: dict[tuple[str, str], ViewEntry] = {}
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._listeners: list[Listener] = []
        self._version = 0  # moved by every change a broadcast makes (see resync)
        self._writing = 0  # persists in flight

    # -- wiring --------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Handle ``quarantine.entry.added`` and ``quarantine.entry.released`` on ``router``, on
        every replica (broadcast routes)."""
        router.add(QuarantineEntryAdded, self.on_added, broadcast=True)
        router.add(QuarantineEntryReleased, self.on_released, broadcast=True)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(kind, entity_id, quarantined)`` whenever an entry changes."""
        self._listeners.append(listener)

    async def load(self) -> int:
        """Read the blacklist at start (same as :meth:`resync`); returns the entries held."""
        return await self.resync()

    async def resync(self) -> int:
        """Replace the view with the quarantine worker's blacklist in Redis; listeners hear of
        every entity whose state changed. Returns the entries held."""
        if self._store is None:
            return len(self._entries)
        base = self._base

        async def read(r: Any) -> list[tuple[Any, list[Any]]]:
            ids = list((await r.hgetall(base + "bl")).values())
            pipe = r.pipeline(transaction=False)
            for record_id in ids:
                pipe.hmget(base + "rec:" + _text(record_id), *_RECORD_FIELDS)
            return list(zip(ids, await pipe.execute(), strict=True))

        rows = await self._store.execute(read)
        fresh: dict[tuple[str, str], ViewEntry] = {}
        for record_id, values in rows:
            entry = _entry(_text(record_id), values)
            if entry is None or entry.kind not in self._kinds:
                continue
            if entry.record_id in self._tombstones:
                continue  # released after this snapshot was read
            fresh[(entry.kind, entry.entity_id)] = entry
        changed = {
            key
            for key in set(fresh) | set(self._entries)
            if fresh.get(key) != self._entries.get(key)
        }
        self._entries = fresh
        for kind, entity_id in sorted(changed):
            self._notify(kind, entity_id)
        if changed:
            _log.info("quarantine_view.resynced", owner=self._owner, changed=len(changed))
        return len(fresh)

    # -- queries (no I/O) ----------------------------------------------------------------------

    def is_quarantined(self, kind: str, entity_id: str) -> bool:
        """True when ``kind``/``entity_id`` is blocked now (expiry honoured)."""
        entry = self._entries.get((kind, entity_id))
        return entry is not None and entry.active(self._now())

    def get(self, kind: str, entity_id: str) -> ViewEntry | None:
        """The active entry for ``kind``/``entity_id``, if any."""
        entry = self._entries.get((kind, entity_id))
        return entry if entry is not None and entry.active(self._now()) else None

    def quarantined(self, kind: str | None = None) -> list[ViewEntry]:
        """Every active entry (of ``kind``), sorted by kind and id."""
        now = self._now()
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
        self._notify(data.kind, data.entity_id)

    # -- internals -----------------------------------------------------------------------------

    def _notify(self, kind: str, entity_id: str) -> None:
        blocked = self.is_quarantined(kind, entity_id)
        for listener in self._listeners:
            listener(kind, entity_id, blocked)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every held entry (active or not) as plain dicts, for admin pages and tests."""
        return [asdict(e) for e in self._entries.values()]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _entry(record_id: str, values: list[Any]) -> ViewEntry | None:
    """A view entry from a record's fields (None when the record is gone or malformed)."""
    kind, entity_id, reason, severity, expires_at = (
        None if v is None else _text(v) for v in values
    )
    if kind is None or entity_id is None:
        return None
    try:
        expiry = float(expires_at) if expires_at else None
    except ValueError:
        _log.warning("quarantine_view.bad_record", record_id=record_id)
        return None
    return ViewEntry(
        record_id=record_id,
        kind=kind,
        entity_id=entity_id,
        reason=(reason or "")[:200],
        severity=severity or "warning",
        expires_at=expiry,
    )
