"""The admin audit trail, kept by the quarantine worker and served at ``GET /admin/audit``.

Every worker publishes ``ops.audit.recorded`` (:mod:`schemas.ops`) for each state-changing
admin call it serves; this worker keeps them in one Redis sorted set scored by the call's time,
trimmed to ``quarantine.audit_retention_s`` (30 days) on every write. The event id is part of
the stored record, so a redelivered event adds nothing.

``GET /admin/audit?since=&until=&subject=&action=&limit=`` (operator and above) answers the
newest records first::

    {"records": [{"id": "<event id>", "subject": "alice", "role": "operator", "auth": "token",
                  "action": "quarantine.release", "method": "POST",
                  "route": "/admin/quarantine/records/{id}/release", "target": {"id": "..."},
                  "outcome": "ok", "status": 200, "at": "2026-12-02T01:02:03Z",
                  "worker": "quarantine"}, ...],
     "retention_s": 2592000}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from common.service import AdminRoute
from common.store import Store
from common.validation import RequestModel, query_of
from schemas.envelope import Envelope
from schemas.ops import AuditRecorded

__all__ = ["AuditPage", "AuditQuery", "AuditTrail", "StoredAudit"]

_SCAN = 5_000  # records read per query at most (filters apply to these)


class StoredAudit(AuditRecorded):
    """An audit record as stored and served: the event's payload plus its event id."""

    id: str = Field(max_length=128)


class AuditPage(BaseModel):
    """The answer of ``GET /admin/audit``."""

    model_config = ConfigDict(extra="forbid")

    records: list[StoredAudit]
    retention_s: int


class AuditQuery(RequestModel):
    """Filters of ``GET /admin/audit`` (times are Unix seconds)."""

    model_config = ConfigDict(allow_inf_nan=False)

    since: float | None = Field(default=None, ge=0, le=1e11)
    until: float | None = Field(default=None, ge=0, le=1e11)
    subject: str | None = Field(default=None, min_length=1, max_length=200)
    action: str | None = Field(default=None, min_length=1, max_length=100)
    limit: int = Field(default=100, ge=1, le=1_000)


class AuditTrail:
    """The stored audit records of the fleet."""

    def __init__(self, store: Store, *, retention_s: int, now: Callable[[], float]) -> None:
        self._store = store
        self._key = store.key("quarantine", "audit")
        self.retention_s = retention_s
        self._now = now

    async def add(self, event: Envelope[Any]) -> None:
        """Keep ``event``'s record (idempotent) and drop what is older than the retention."""
        record = StoredAudit(id=event.id, **event.data.model_dump())
        member = record.model_dump_json()
        score = record.at.timestamp()
        oldest = self._now() - self.retention_s
        key, retention = self._key, self.retention_s

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {member: score})
                pipe.zremrangebyscore(key, "-inf", f"({oldest}")
                pipe.expire(key, retention)
                return await pipe.execute()

        await self._store.execute(write)

    async def query(self, query: AuditQuery) -> list[StoredAudit]:
        """The newest records matching ``query``."""
        low = "-inf" if query.since is None else str(query.since)
        high = "+inf" if query.until is None else str(query.until)
        key = self._key
        rows: Any = await self._store.execute(
            lambda r: r.zrevrangebyscore(key, high, low, start=0, num=_SCAN)
        )
        found = []
        for raw in rows:
            fields = json.loads(raw)  # filtered before validation: a narrow query reads many
            if query.subject is not None and fields.get("subject") != query.subject:
                continue
            if query.action is not None and fields.get("action") != query.action:
                continue
            found.append(StoredAudit.model_validate(fields))
            if len(found) >= query.limit:
                break
        return found

    def route(self) -> AdminRoute:
        """``GET /admin/audit`` (operator and above)."""

        async def audit(request: web.Request) -> web.Response:
            records = await self.query(query_of(request, AuditQuery))
            page = AuditPage(records=records, retention_s=self.retention_s)
            return web.json_response(page.model_dump(mode="json"))

        return AdminRoute(
            "GET",
            "audit",
            audit,
            "operator",
            "audit.read",
            query=AuditQuery,
            response=AuditPage,
            summary="the audit trail of state-changing admin calls, newest first",
        )
