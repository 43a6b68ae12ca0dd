"""The quarantine admin API, mounted by the ops server under ``/admin/quarantine/...``.

Access (checked by the ops server from ``min_role``): reading, reviewing, releasing,
discarding and extending a TTL need operator; a permanent block needs admin.

* ``GET  quarantine/records?status=&kind=&reason=&since=&until=&offset=&limit=``
* ``GET  quarantine/records/{id}``            the record, body as base64 (+ text if UTF-8)
* ``GET  quarantine/summary``                 counts by class (permanent/transient/entity)
* ``GET  quarantine/blacklist``               active blocks
* ``POST quarantine/records/{id}/review``     ``{"note": ...}``
* ``POST quarantine/records/{id}/release``    ``{"note": ...}``
* ``POST quarantine/records/{id}/discard``    ``{"note": ...}``
* ``POST quarantine/records/{id}/extend``     ``{"ttl_s": 3600, "note": ...}``
* ``POST quarantine/records/{id}/block``      permanent block (admin)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal, Protocol

from aiohttp import web
from pydantic import ConfigDict, Field, field_validator

from common.bus.publisher import Publisher
from common.config import QuarantineSettings
from common.problems import Problem
from common.security.http import PRINCIPAL
from common.service import AdminRoute
from common.validation import Answer, RequestModel, body_of, query_of
from schemas.envelope import Envelope
from workers.quarantine.keys import ANY
from workers.quarantine.records import REASON_CODES, STATUSES, classify
from workers.quarantine.release import Releaser
from workers.quarantine.repository import Repository


class QuarantineAdmin(Protocol):
    """What the routes use of the quarantine service (they never see the class itself)."""

    settings: QuarantineSettings
    repo: Repository
    releaser: Releaser
    publisher: Publisher
    now: Callable[[], float]

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """One record with its body, redacted."""
        ...

    def added_event(self, record: dict[str, Any], causation: Envelope[Any] | None) -> Envelope[Any]:
        """The ``quarantine.entry.added`` announcement of ``record``."""
        ...

__all__ = ["public", "routes"]

_KINDS = frozenset({"message", "ai_model", "exchange_source", "producer", "strategy", "event_type"})
_MAX_TEXT_BODY = 64 * 1024


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record as JSON: the body as base64, plus as text when it is UTF-8 and small."""
    out = {k: v for k, v in record.items() if k not in {"body", "headers", "props", "evidence"}}
    body = record.get("body")
    if isinstance(body, bytes):
        out["body_base64"] = base64.b64encode(body).decode("ascii")
        if len(body) <= _MAX_TEXT_BODY:
            try:
                out["body_text"] = body.decode("utf-8")
            except UnicodeDecodeError:
                out["body_text"] = None
    for name in ("headers", "props", "evidence"):
        if record.get(name):
            out[name] = json.loads(record[name])
    return out


def _reviewer(request: web.Request) -> str:
    """The authenticated caller's subject (set by the ops server's security middleware)."""
    principal = request.get(PRINCIPAL)
    return principal.subject[:200] if principal is not None else "admin-api"


def _one_of(value: str, allowed: frozenset[str] | tuple[str, ...], name: str) -> str:
    if value != ANY and value not in allowed:
        raise ValueError(f"unknown {name}; one of {', '.join(sorted(allowed))}")
    return value


def _enum(values: frozenset[str] | tuple[str, ...]) -> dict[str, Any]:
    return {"enum": [ANY, *sorted(values)]}


class RecordQuery(RequestModel):
    """Filters and paging of ``GET quarantine/records`` (times are Unix seconds)."""

    model_config = ConfigDict(allow_inf_nan=False)

    status: str = Field(default=ANY, max_length=40, json_schema_extra=_enum(STATUSES))
    kind: str = Field(default=ANY, max_length=40, json_schema_extra=_enum(_KINDS))
    reason: str = Field(default=ANY, max_length=40, json_schema_extra=_enum(REASON_CODES))
    since: float | None = Field(default=None, ge=0, le=1e11)
    until: float | None = Field(default=None, ge=0, le=1e11)
    offset: int = Field(default=0, ge=0, le=10**9)
    limit: int = Field(default=50, ge=1, le=10_000)

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        return _one_of(value, STATUSES, "status")

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return _one_of(value, _KINDS, "kind")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _one_of(value, REASON_CODES, "reason")


class NoteBody(RequestModel):
    """An optional note, kept with the record's history."""

    note: str = Field(default="", max_length=2_000)


class ExtendBody(NoteBody):
    """A new block lifetime from now, in seconds (at most a year)."""

    ttl_s: int = Field(ge=1, le=365 * 24 * 3600)


class ReviewAnswer(Answer):
    """The record is now under review."""

    status: Literal["under_review"]


class DecisionAnswer(Answer):
    """The record's new status and the event that announced it."""

    status: str
    event: dict[str, Any]


class BlockAnswer(Answer):
    """The block's previous status and its new end (None: permanent)."""

    status: str | None
    expires_at: float | None
    permanent: bool


async def _answer(service: QuarantineAdmin, outcome: Any) -> web.Response:
    await service.publisher.publish(outcome.event)
    if outcome.changed:
        answer = DecisionAnswer(status=outcome.status, event=outcome.event.data.model_dump())
        return web.json_response(answer.model_dump(mode="json"))
    refusal = outcome.event.data
    status = 404 if refusal.reason == "unknown_record" else 409
    raise Problem(status, refusal.detail or refusal.reason, code=refusal.reason)


def _conflict(status: str, *, entity_only: bool = False) -> Problem:
    if status in {"missing", ""}:
        return Problem(404, "unknown record", code="unknown_record")
    hint = " (only an active entity block has a TTL)" if entity_only else ""
    return Problem(409, f"record is {status}{hint}", code="conflict")


def routes(service: QuarantineAdmin) -> list[AdminRoute]:
    """The admin routes of ``service``."""
    settings = service.settings

    async def list_records(request: web.Request) -> web.Response:
        query = query_of(request, RecordQuery)
        if query.limit > settings.max_page:
            raise Problem(400, f"limit must be at most {settings.max_page}", code="invalid_query")
        offset, limit = query.offset, query.limit
        total, rows = await service.repo.search(
            status=query.status,
            kind=query.kind,
            reason=query.reason,
            since=query.since,
            until=query.until,
            offset=offset,
            limit=limit,
        )
        return web.json_response(
            {"total": total, "offset": offset, "limit": limit, "records": rows}
        )

    async def show(request: web.Request) -> web.Response:
        record = await service.get(request.match_info["id"])
        if record is None:
            raise Problem(404, "unknown record", code="unknown_record")
        return web.json_response(public(record))

    async def summary(_request: web.Request) -> web.Response:
        counts, blacklist, oldest = await service.repo.gauges()
        by_class: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, reason, status), n in counts.items():
            if n:
                cell = by_class.setdefault(classify(reason), {}).setdefault(f"{kind}/{reason}", {})
                cell[status] = n
        return web.json_response(
            {"classes": by_class, "blacklist": blacklist, "oldest_unreviewed_at": oldest}
        )

    async def blacklist(_request: web.Request) -> web.Response:
        entries = []
        for record_id in (await service.repo.blacklist()).values():
            record = await service.get(record_id)
            if record is not None and record.get("status") in {"quarantined", "under_review"}:
                entries.append(public(record))
        return web.json_response({"entries": entries})

    async def review(request: web.Request) -> web.Response:
        note = body_of(request, NoteBody).note
        result = await service.releaser.review(
            request.match_info["id"], by=_reviewer(request), note=note
        )
        if result == "ok":
            return web.json_response(ReviewAnswer(status="under_review").model_dump())
        raise _conflict(result)

    async def release(request: web.Request) -> web.Response:
        note = body_of(request, NoteBody).note
        outcome = await service.releaser.release(
            request.match_info["id"], by=_reviewer(request), note=note
        )
        return await _answer(service, outcome)

    async def discard(request: web.Request) -> web.Response:
        note = body_of(request, NoteBody).note
        outcome = await service.releaser.discard(
            request.match_info["id"], by=_reviewer(request), note=note
        )
        return await _answer(service, outcome)

    async def extend(request: web.Request) -> web.Response:
        body = body_of(request, ExtendBody)
        return await _extend(request, service.now() + body.ttl_s, body.note)

    async def block(request: web.Request) -> web.Response:
        return await _extend(request, None, body_of(request, NoteBody).note)

    async def _extend(request: web.Request, expires_at: float | None, note: str) -> web.Response:
        done = await service.repo.extend(
            request.match_info["id"],
            expires_at=expires_at,
            by=_reviewer(request),
            note=note,
            now=service.now(),
        )
        if done.outcome != "ok":
            raise _conflict(done.previous or "missing", entity_only=True)
        record = await service.repo.get(request.match_info["id"])
        if record is not None:
            await service.publisher.publish(service.added_event(record, None))
        answer = BlockAnswer(
            status=done.previous, expires_at=expires_at, permanent=expires_at is None
        )
        return web.json_response(answer.model_dump())

    base = "quarantine/records"
    return [
        AdminRoute("GET", base, list_records, "operator", "quarantine.read", query=RecordQuery),
        AdminRoute("GET", base + "/{id}", show, "operator", "quarantine.read"),
        AdminRoute("GET", "quarantine/summary", summary, "operator", "quarantine.read"),
        AdminRoute("GET", "quarantine/blacklist", blacklist, "operator", "quarantine.read"),
        AdminRoute(
            "POST",
            base + "/{id}/review",
            review,
            "operator",
            "quarantine.review",
            body=NoteBody,
            response=ReviewAnswer,
        ),
        AdminRoute(
            "POST",
            base + "/{id}/release",
            release,
            "operator",
            "quarantine.release",
            body=NoteBody,
            response=DecisionAnswer,
        ),
        AdminRoute(
            "POST",
            base + "/{id}/discard",
            discard,
            "operator",
            "quarantine.discard",
            body=NoteBody,
            response=DecisionAnswer,
        ),
        AdminRoute(
            "POST",
            base + "/{id}/extend",
            extend,
            "operator",
            "quarantine.extend",
            body=ExtendBody,
            response=BlockAnswer,
        ),
        AdminRoute(
            "POST",
            base + "/{id}/block",
            block,
            "admin",
            "quarantine.block",
            body=NoteBody,
            response=BlockAnswer,
        ),
    ]
