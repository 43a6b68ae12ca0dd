"""What the console reads from Redis, where the workers keep it.

Quarantine records come through the quarantine worker's own :class:`Repository` (its indexes
are by status, kind and reason; event type, worker and producer are filtered within the newest
``scan_limit`` matches of the indexed filter, and the page says so). Alert states and silences
come from the health monitor's :class:`AlertBook` (the console only reads them: silences are
created and expired by events, see :mod:`eventguard.console.requests`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.config.workers import AiFallbackSettings
from common.security.redaction import redact, redact_text
from common.store import Store
from workers.ai_fallback import keys as ai_keys
from workers.health_monitor.alerts import AlertBook, Silence
from workers.health_monitor.evaluator import AlertState
from workers.quarantine.keys import ANY
from workers.quarantine.records import REASON_CODES, decode_headers
from workers.quarantine.repository import Repository

__all__ = ["AiModels", "Alerts", "Filters", "Group", "ModelState", "Quarantine", "Spend"]

_GROUP_FIELDS = ("reason", "event_type", "worker")
_MAX_BODY_SHOWN = 64 * 1024


@dataclass(frozen=True)
class Filters:
    """A quarantine query: indexed (status, kind, reason, since) and scanned (the rest)."""

    status: str = "quarantined"
    kind: str = ANY
    reason: str = ANY
    event_type: str = ""
    worker: str = ""
    producer: str = ""
    since_h: float | None = None

    @property
    def scanned(self) -> bool:
        """True when a filter needs a scan (it has no index)."""
        return bool(self.event_type or self.worker or self.producer)

    def keep(self, row: dict[str, str]) -> bool:
        """True when ``row`` passes the scanned filters."""
        return (
            (not self.event_type or row.get("event_type") == self.event_type)
            and (not self.worker or row.get("worker") == self.worker)
            and (not self.producer or row.get("producer") == self.producer)
        )


@dataclass(frozen=True)
class Group:
    """Quarantined dead messages sharing reason, event type and worker."""

    reason: str
    event_type: str
    worker: str
    count: int


class Quarantine:
    """Quarantine reads for the pages."""

    def __init__(
        self,
        store: Store,
        *,
        scan_limit: int = 2_000,
        groups_ttl_s: float = 5.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.repo = Repository(store)
        self.scan_limit = scan_limit
        self.groups_ttl_s = groups_ttl_s
        self.now = now
        self._groups: tuple[float, list[Group]] | None = None
        self._groups_lock = asyncio.Lock()

    async def page(
        self, filters: Filters, *, offset: int, limit: int
    ) -> tuple[int, list[dict[str, str]]]:
        """(total, one page of rows, newest first); totals of scanned filters are bounded."""
        since = None if filters.since_h is None else self.now() - filters.since_h * 3600
        if not filters.scanned:
            return await self.repo.search(
                status=filters.status, kind=filters.kind, reason=filters.reason,
                since=since, offset=offset, limit=limit,
            )  # fmt: skip
        key = self.repo.keys.index(filters.status, filters.kind, filters.reason)
        rows = await self._scan(key, since, ("event_type", "worker", "producer"))
        kept = [row["id"] for row in rows if filters.keep(row)]
        return len(kept), await self.repo.summaries(kept[offset : offset + limit])

    async def groups(self) -> list[Group]:
        """Failure groups among the newest ``scan_limit`` quarantined dead messages (computed at
        most every ``groups_ttl_s``; concurrent pages share one computation)."""
        now = self.now()
        if self._groups is not None and now - self._groups[0] < self.groups_ttl_s:
            return self._groups[1]
        async with self._groups_lock:
            if self._groups is not None and self.now() - self._groups[0] < self.groups_ttl_s:
                return self._groups[1]
            key = self.repo.keys.index("quarantined", "message", ANY)
            rows = await self._scan(key, None, _GROUP_FIELDS)
            counts = Counter(tuple(row[f] for f in _GROUP_FIELDS) for row in rows)
            groups = [Group(r, t, w, n) for (r, t, w), n in counts.most_common()]
            self._groups = (self.now(), groups)
            return groups

    async def _scan(
        self, index: str, since: float | None, fields: tuple[str, ...]
    ) -> list[dict[str, str]]:
        """``fields`` (and the id) of the newest ``scan_limit`` records of ``index``."""
        low = "-inf" if since is None else repr(since)
        limit = self.scan_limit
        ids: Any = await self.repo.store.execute(
            lambda r: r.zrevrangebyscore(index, "+inf", low, start=0, num=limit)
        )
        keys = [self.repo.keys.record(_text(i)) for i in ids]

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, list(fields))
                return await pipe.execute()

        values: Any = await self.repo.store.execute(read) if keys else []
        return [
            {"id": _text(i), **{f: _text(v) for f, v in zip(fields, row, strict=True)}}
            for i, row in zip(ids, values, strict=True)
        ]

    async def members(self, reason: str, event_type: str, worker: str) -> list[str]:
        """Every quarantined dead message of a group (the whole index, in chunks)."""
        if reason not in REASON_CODES:
            return []
        ids: list[str] = []
        offset, chunk = 0, 5_000
        while True:
            _, rows = await self.repo.search(
                status="quarantined", kind="message", reason=reason, offset=offset, limit=chunk
            )
            ids += [
                row["id"] for row in rows
                if row.get("event_type") == event_type and row.get("worker") == worker
            ]  # fmt: skip
            if len(rows) < chunk:
                return ids
            offset += chunk

    async def statuses(self, record_ids: list[str]) -> list[str]:
        """The status of each record (``""`` when it is gone)."""
        keys = [self.repo.keys.record(i) for i in record_ids]

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "status")
                return await pipe.execute()

        values: Any = await self.repo.store.execute(read) if keys else []
        return [v.decode() if isinstance(v, bytes) else "" for v in values]

    async def record(self, record_id: str) -> dict[str, Any] | None:
        """One record for display: headers decoded, body as redacted text, history."""
        if not record_id or len(record_id) > 128:
            return None
        record = await self.repo.get(record_id)
        if record is None:
            return None
        body = record.pop("body", b"")
        headers = record.get("headers")
        record["headers"] = redact(decode_headers(headers)) if headers else {}
        record["body_text"] = _body_text(body if isinstance(body, bytes) else b"")
        return record

    async def dead_per_reason(self, window_s: float = 3600.0) -> dict[str, int]:
        """Dead letters recorded in the last ``window_s`` seconds, per reason (index counts)."""
        low = repr(self.now() - window_s)
        keys = {reason: self.repo.keys.index(ANY, "message", reason) for reason in REASON_CODES}

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys.values():
                    pipe.zcount(key, low, "+inf")
                return await pipe.execute()

        counts: Any = await self.repo.store.execute(read)
        return {r: int(n) for r, n in zip(keys, counts, strict=True) if int(n)}

    async def blacklist(self) -> list[dict[str, str]]:
        """The active entity blocks with their expiry."""
        ids = list((await self.repo.blacklist()).values())
        rows = await self.repo.summaries(ids) if ids else []
        return [row for row in rows if row.get("status") in {"quarantined", "under_review"}]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _body_text(body: bytes) -> str:
    text = body[:_MAX_BODY_SHOWN].decode("utf-8", errors="replace")
    try:
        shown = json.dumps(redact(json.loads(text)), indent=2, sort_keys=True)
    except ValueError:
        shown = redact_text(text)
    return shown + ("\n... (truncated)" if len(body) > _MAX_BODY_SHOWN else "")


class Alerts:
    """Alert states and silences, as the health monitor keeps them."""

    def __init__(self, store: Store, *, now: Callable[[], float] = time.time) -> None:
        self.book = AlertBook(store)
        self.now = now

    async def load(self) -> tuple[list[AlertState], list[AlertState], list[Silence]]:
        """(shown alerts, silenced alerts, live silences), newest first."""
        alerts, silences = await self.book.load()
        now = self.now()
        live = sorted(
            (s for s in silences.values() if s.expires_at > now), key=lambda s: -s.created_at
        )
        ordered = sorted(alerts.values(), key=lambda a: -a.since)
        silenced = [a for a in ordered if self.book.silenced(a, now)]
        return [a for a in ordered if a not in silenced], silenced, live


@dataclass(frozen=True)
class ModelState:
    """A configured model as the AI fallback worker left it in Redis."""

    name: str
    cooldown_s: float
    auth_disabled: bool
    off_by: str = ""  # who switched it off (empty: on)
    off_note: str = ""

    @property
    def off(self) -> bool:
        """Switched off by an operator."""
        return bool(self.off_by)


@dataclass(frozen=True)
class Spend:
    """AI usage in the current budget window (fleet-wide, or one requester's), against its
    limits."""

    tokens: int
    usd: float
    max_tokens: int | None
    max_usd: float | None
    window_s: int
    scope: str = "global"


class AiModels:
    """Disables, cool-downs and budgets, from the AI fallback worker's keys."""

    def __init__(
        self,
        store: Store,
        settings: AiFallbackSettings,
        *,
        max_actors: int = 200,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.max_actors = max_actors
        self.now = now

    async def load(self) -> tuple[list[ModelState], Spend]:
        """Each configured model's state, and the fleet's spend in the current window."""
        names = [m.name for m in self.settings.models]
        budget = ai_keys.budget(self.store, self._window(), "global")
        store = self.store

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.pttl(ai_keys.cooldown(store, name))
                    pipe.exists(ai_keys.disabled(store, name))
                    pipe.get(ai_keys.off(store, name))
                pipe.hgetall(budget)
                return await pipe.execute()

        replies: Any = await self.store.execute(read)
        models = [_model_state(name, replies[3 * i : 3 * i + 3]) for i, name in enumerate(names)]
        s = self.settings
        return models, _spend("global", replies[-1], s.global_max_tokens, s.global_max_cost_usd, s)

    def _window(self) -> int:
        return int(self.now() // self.settings.budget_window_s)

    async def per_actor(self) -> list[Spend]:
        """Requesters' spend in the current window (``actor:<subject>``, ``producer:<user>``),
        most tokens first; ``max_actors`` of them at most. ai_fallback keeps them (and their
        index) only while an actor budget is set (``ai_fallback.actor_max_*``)."""
        window = self._window()
        index = ai_keys.budget_index(self.store, window)
        limit = self.max_actors
        store = self.store

        async def read(r: Any) -> Any:
            _, members = await r.sscan(index, 0, count=limit)
            scopes = sorted(_text(m) for m in members)[:limit]
            async with r.pipeline(transaction=False) as pipe:
                for scope in scopes:
                    pipe.hgetall(ai_keys.budget(store, window, scope))
                return scopes, await pipe.execute()

        scopes, values = await self.store.execute(read)
        s = self.settings
        spends = [
            _spend(scope, v, s.actor_max_tokens, s.actor_max_cost_usd, s)
            for scope, v in zip(scopes, values, strict=True)
        ]
        return sorted(spends, key=lambda x: (-x.tokens, x.scope))


def _model_state(name: str, replies: list[Any]) -> ModelState:
    ttl_ms, disabled, off = replies
    facts: dict[str, Any] = {}
    if off is not None:
        try:
            facts = dict(json.loads(off))
        except (ValueError, TypeError):
            facts = {"by": "?"}
    by = str(facts.get("by", "?"))[:200] if off is not None else ""
    note = str(facts.get("note", ""))[:500]
    return ModelState(name, max(0, int(ttl_ms)) / 1000, bool(disabled), by, note)


def _spend(
    scope: str, raw: Any, max_tokens: int | None, max_usd: float | None, s: AiFallbackSettings
) -> Spend:
    used = {_text(k): int(v) for k, v in (raw or {}).items()}
    return Spend(
        used.get("tokens", 0), used.get("micro_usd", 0) / 1e6, max_tokens, max_usd,
        s.budget_window_s, scope,
    )  # fmt: skip
