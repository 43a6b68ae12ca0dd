"""The quarantine records in Redis: write, change state, list, look up.

Every change is one Lua script (see :mod:`workers.quarantine.scripts`) so a record, its
indexes, its history and the blacklist never disagree, even when the worker dies between
two steps. Listing uses the pre-combined indexes: any filter on status, kind and reason, a
time range and a page is one ``ZREVRANGEBYSCORE ... LIMIT`` plus one pipelined ``HMGET``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.bus.redis_batch import RedisBatch
from common.store import Store
from workers.quarantine.keys import ANY, Keys
from workers.quarantine.records import STATUSES, DeadMessage
from workers.quarantine.scripts import (
    ADD_DEAD,
    ADD_ENTITY,
    CLAIM_OUTBOX,
    EXTEND,
    PURGE,
    TRANSITION,
    Script,
)

__all__ = ["DeadAdded", "EntityAdded", "Repository", "Transition", "blacklist_field"]

_SEP = "\x1f"
_SUMMARY_FIELDS = (
    "id", "kind", "entity_id", "status", "reason", "class", "detail", "severity",
    "created_at", "updated_at", "expires_at", "producer", "event_type", "worker",
    "routing_key", "attempts", "body_size", "release_id",
)  # fmt: skip


def blacklist_field(kind: str, entity_id: str) -> str:
    """The blacklist hash field of an entity."""
    return kind + _SEP + entity_id


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class DeadAdded:
    """What writing a dead message found."""

    created: bool
    producer_count: int
    type_count: int
    producer_blocked: bool
    type_blocked: bool


@dataclass(frozen=True)
class EntityAdded:
    """What quarantining an entity did: ``created``, ``merged`` into the active block, or the
    record ``exists`` already (the same request again)."""

    outcome: str
    record_id: str
    expires_at: float | None


@dataclass(frozen=True)
class Transition:
    """The answer of a state change: ``ok``, ``resume``, ``conflict`` or ``missing``."""

    outcome: str
    previous: str
    release_id: str


def _history(to: str, by: str, note: str, now: float, **extra: Any) -> str:
    return json.dumps({"to": to, "by": by, "note": note, "at": now, **extra})


def _change(to: str, by: str, note: str, now: float, **extra: Any) -> str:
    """A history entry unique to this one change: a script sent again (a retried write) finds
    it last and knows the change is made; another request, however alike, does not."""
    return _history(to, by, note, now, change=uuid.uuid4().hex[:16], **extra)


class Repository:
    """Quarantine records over one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = Keys(store)
        self._add_dead = Script(ADD_DEAD, durable=True)
        self._add_entity = Script(ADD_ENTITY, durable=True)
        self._transition = Script(TRANSITION, durable=True)
        self._purge = Script(PURGE)
        self._extend = Script(EXTEND, durable=True)
        self._claim_outbox = Script(CLAIM_OUTBOX)
        self._batch = RedisBatch(store)  # concurrent dead-letter writes share a round trip

    # -- writes --------------------------------------------------------------------------------

    async def add_dead(
        self, message: DeadMessage, *, now: float, window_s: int, announce: bool = True
    ) -> DeadAdded:
        """Record ``message`` unless it is already recorded; count it for flood detection;
        with ``announce``, queue its ``quarantine.entry.added`` in the outbox."""
        window = int(now // window_s)
        producer = message.producer
        etype = message.event_type
        fields = message.fields(now=now)
        body = fields.pop("body")
        args: list[Any] = [
            self.keys.base,
            message.record_id,
            message.reason,
            repr(now),
            _history("quarantined", "eventguard.dead", message.reason, now),
            window_s * 2,
            blacklist_field("producer", producer) if producer else "",
            blacklist_field("event_type", etype) if etype else "",
            self.keys.flood("producer", window, producer),
            self.keys.flood("event_type", window, etype),
            json.dumps(fields),
            body,
            "1" if announce else "0",
        ]
        result = await self._add_dead(
            self.store, self.keys.record(message.record_id), args, batch=self._batch
        )
        created, pc, tc, pb, tb = (int(x) for x in result)
        return DeadAdded(bool(created), pc, tc, bool(pb), bool(tb))

    async def add_entity(
        self,
        *,
        record_id: str,
        kind: str,
        entity_id: str,
        reason: str,
        detail: str,
        severity: str,
        evidence: Mapping[str, str],
        requested_by: str,
        expires_at: float | None,
        now: float,
    ) -> EntityAdded:
        """Block an entity (or extend its active block)."""
        expiry = "" if expires_at is None else repr(expires_at)
        field = blacklist_field(kind, entity_id)
        fields: dict[str, str] = {
            "id": record_id,
            "kind": kind,
            "entity_id": entity_id,
            "status": "quarantined",
            "reason": reason,
            "class": "entity",
            "detail": detail,
            "severity": severity,
            "evidence": json.dumps(dict(evidence), sort_keys=True),
            "requested_by": requested_by,
            "created_at": repr(now),
            "updated_at": repr(now),
            "expires_at": expiry,
            "permanent": "1" if expires_at is None else "0",
            "bl_field": field,
        }
        args: list[Any] = [
            self.keys.base,
            record_id,
            kind,
            reason,
            repr(now),
            _history("quarantined", requested_by, detail, now),
            field,
            expiry,
            _history(
                "extended", requested_by, detail, now, expires_at=expires_at, merged=record_id
            ),
            severity,
        ]
        for name, value in fields.items():
            args += [name, value]
        outcome, rid, exp = await self._add_entity(self.store, self.keys.record(record_id), args)
        exp_text = _text(exp)
        return EntityAdded(_text(outcome), _text(rid), float(exp_text) if exp_text else None)

    async def transition(
        self,
        record_id: str,
        to: str,
        *,
        allowed: tuple[str, ...],
        by: str,
        note: str,
        now: float,
        expect_release_id: str = "",
        owner: str = "",
        expired_by: float | None = None,
        fields: Mapping[str, str] | None = None,
        **history: Any,
    ) -> Transition:
        """Move ``record_id`` to ``to`` if it is in one of ``allowed``."""
        args: list[Any] = [
            self.keys.base,
            record_id,
            to,
            " ".join(allowed),
            repr(now),
            _change(to, by, note, now, **history),
            expect_release_id,
            owner,
            "" if expired_by is None else repr(expired_by),
        ]
        for name, value in (fields or {}).items():
            args += [name, value]
        outcome, previous, rid = await self._transition(
            self.store, self.keys.record(record_id), args
        )
        return Transition(_text(outcome), _text(previous), _text(rid))

    async def extend(
        self, record_id: str, *, expires_at: float | None, by: str, note: str, now: float
    ) -> Transition:
        """Set an active entity block's expiry (``None``: permanent)."""
        args: list[Any] = [
            self.keys.base,
            record_id,
            "" if expires_at is None else repr(expires_at),
            repr(now),
            _change("extended", by, note, now, expires_at=expires_at),
        ]
        outcome, status = await self._extend(self.store, self.keys.record(record_id), args)
        return Transition(_text(outcome), _text(status), "")

    # -- the announcement outbox ---------------------------------------------------------------

    async def claim_announcements(self, n: int, *, now: float, lease_s: float) -> list[str]:
        """Up to ``n`` record ids to announce (new ones, and claims older than the lease)."""
        args = [self.keys.base, n, repr(now), repr(now - lease_s)]
        ids = await self._claim_outbox(self.store, self.keys.outbox, args)
        return [_text(i) for i in ids or []]

    async def announced(self, record_ids: list[str]) -> None:
        """Forget the claims of announcements the broker confirmed."""
        if record_ids:
            key = self.keys.announcing
            await self.store.execute(lambda r: r.zrem(key, *record_ids))

    async def unclaim_announcements(self, record_ids: list[str]) -> None:
        """Give back the claims of announcements whose publish failed: the next claim takes
        them at once instead of after the lease."""
        if record_ids:
            key = self.keys.announcing
            await self.store.execute(lambda r: r.zadd(key, dict.fromkeys(record_ids, 0)))

    async def summaries(self, record_ids: list[str]) -> list[dict[str, str]]:
        """The summary fields of each record that exists, in order."""
        record_keys = [self.keys.record(i) for i in record_ids]

        async def rows(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for rk in record_keys:
                    pipe.hmget(rk, list(_SUMMARY_FIELDS))
                return await pipe.execute()

        values = await self.store.execute(rows)
        return [
            {
                n: _text(v) if v is not None else ""
                for n, v in zip(_SUMMARY_FIELDS, row, strict=True)
            }
            for row in values
            if row and row[0] is not None
        ]

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """The record's fields (``body`` as bytes, the rest as text) and its ``history``."""
        rk, hk = self.keys.record(record_id), self.keys.history(record_id)

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hgetall(rk)
                pipe.lrange(hk, 0, -1)
                return await pipe.execute()

        raw, history = await self.store.execute(read)
        if not raw:
            return None
        record: dict[str, Any] = {
            _text(k): (v if k == b"body" else _text(v)) for k, v in raw.items()
        }
        record["history"] = [json.loads(item) for item in history]
        return record

    async def search(
        self,
        *,
        status: str = ANY,
        kind: str = ANY,
        reason: str = ANY,
        since: float | None = None,
        until: float | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[dict[str, str]]]:
        """(total matching, one page newest first) without bodies."""
        key = self.keys.index(status, kind, reason)
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)

        async def page(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.zcount(key, low, high)
                pipe.zrevrangebyscore(key, high, low, start=offset, num=limit)
                return await pipe.execute()

        total, ids = await self.store.execute(page)
        if not ids:
            return int(total), []
        return int(total), await self.summaries([_text(i) for i in ids])

    async def blocked_record(self, kind: str, entity_id: str) -> str | None:
        """The id of the active record blocking ``kind``/``entity_id``, if any."""
        key, field = self.keys.blacklist, blacklist_field(kind, entity_id)
        value = await self.store.execute(lambda r: r.hget(key, field))
        return _text(value) if value is not None else None

    async def blacklist(self) -> dict[str, str]:
        """Blacklist field -> record id."""
        key = self.keys.blacklist
        raw = await self.store.execute(lambda r: r.hgetall(key))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def due_expiries(self, now: float, limit: int = 500) -> list[str]:
        """Entity records whose block expired at or before ``now``."""
        key = self.keys.expiry
        ids = await self.store.execute(
            lambda r: r.zrangebyscore(key, "-inf", repr(now), start=0, num=limit)
        )
        return [_text(i) for i in ids]

    async def releasing(self, started_before: float, limit: int = 500) -> list[str]:
        """Records whose release started before ``started_before`` and never finished."""
        key = self.keys.releasing
        ids = await self.store.execute(
            lambda r: r.zrangebyscore(key, "-inf", repr(started_before), start=0, num=limit)
        )
        return [_text(i) for i in ids]

    async def purge(self, *, older_than: float, limit: int) -> tuple[int, int, int]:
        """Delete up to ``limit`` records created at or before ``older_than`` (retention);
        returns (purged, kept because active or releasing, body bytes freed)."""
        everything = self.keys.index()
        result = await self._purge(
            self.store, everything, [self.keys.base, repr(older_than), limit]
        )
        purged, kept, freed = (int(x) for x in result)
        return purged, kept, freed

    async def count(self) -> int:
        """Every record held (any status)."""
        everything = self.keys.index()
        return int(await self.store.execute(lambda r: r.zcard(everything)))

    async def gauges(self) -> tuple[dict[tuple[str, str, str], int], int, float | None]:
        """(entries by kind, reason and status; blacklist size; oldest unreviewed time)."""
        combos_key, bl, oldest_key = (
            self.keys.combos,
            self.keys.blacklist,
            self.keys.index("quarantined"),
        )
        combos = sorted(
            _text(c) for c in await self.store.execute(lambda r: r.smembers(combos_key))
        )
        pairs = [tuple(c.split("|", 1)) for c in combos]
        cells = [(k, r, s) for k, r in pairs for s in STATUSES]
        index = self.keys.index

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for kind, reason, status in cells:
                    pipe.zcard(index(status, kind, reason))
                pipe.hlen(bl)
                pipe.zrange(oldest_key, 0, 0, withscores=True)
                return await pipe.execute()

        results = await self.store.execute(read)
        counts = {cell: int(n) for cell, n in zip(cells, results[:-2], strict=True)}
        oldest = results[-1]
        return counts, int(results[-2]), float(oldest[0][1]) if oldest else None
