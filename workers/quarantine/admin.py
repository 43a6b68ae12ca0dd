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
from typing import TYPE_CHECKING, Any

from aiohttp import web

from common.security.http import PRINCIPAL
from common.service import AdminRoute
from workers.quarantine.keys import ANY
from workers.quarantine.records import REASON_CODES, STATUSES, classify

if TYPE_CHECKING:
    from workers.quarantine.service import QuarantineService

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


def _choice(request: web.Request, name: str, allowed: frozenset[str] | tuple[str, ...]) -> str:
    value = request.query.get(name, ANY)
    if value != ANY and value not in allowed:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"unknown {name} {value!r}", "allowed": sorted(allowed)}),
            content_type="application/json",
        )
    return value


def _number(
    request: web.Request, name: str, default: float | None, low: float, high: float
) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{name} must be a number in [{low}, {high}]"}),
            content_type="application/json",
        )
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text='{"error": "body must be JSON"}', content_type="application/json"
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text='{"error": "body must be a JSON object"}', content_type="application/json"
        )
    return data


def _note(data: dict[str, Any]) -> str:
    return str(data.get("note", ""))[:2000]


async def _answer(service: QuarantineService, outcome: Any) -> web.Response:
    await service.ctx.publisher.publish(outcome.event)
    if outcome.changed:
        return web.json_response(
            {"status": outcome.status, "event": outcome.event.data.model_dump()}
        )
    refusal = outcome.event.data
    status = 404 if refusal.reason == "unknown_record" else 409
    return web.json_response({"error": refusal.reason, "detail": refusal.detail}, status=status)


def _conflict(status: str, *, entity_only: bool = False) -> web.Response:
    if status in {"missing", ""}:
        return web.json_response({"error": "unknown record"}, status=404)
    hint = " (only an active entity block has a TTL)" if entity_only else ""
    return web.json_response({"error": f"record is {status}{hint}"}, status=409)


def routes(service: QuarantineService) -> list[AdminRoute]:
    """The admin routes of ``service``."""
    settings = service.settings

    async def list_records(request: web.Request) -> web.Response:
        limit = int(_number(request, "limit", 50, 1, settings.max_page) or 50)
        offset = int(_number(request, "offset", 0, 0, 10**9) or 0)
        total, rows = await service.repo.search(
            status=_choice(request, "status", STATUSES),
            kind=_choice(request, "kind", _KINDS),
            reason=_choice(request, "reason", REASON_CODES),
            since=_number(request, "since", None, 0, 1e11),
            until=_number(request, "until", None, 0, 1e11),
            offset=offset,
            limit=limit,
        )
        return web.json_response(
            {"total": total, "offset": offset, "limit": limit, "records": rows}
        )

    async def show(request: web.Request) -> web.Response:
        record = await service.get(request.match_info["id"])
        if record is None:
            return web.json_response({"error": "unknown record"}, status=404)
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
        data = await _body(request)
        result = await service.releaser.review(
            request.match_info["id"], by=_reviewer(request), note=_note(data)
        )
        if result == "ok":
            return web.json_response({"status": "under_review"})
        return _conflict(result)

    async def release(request: web.Request) -> web.Response:
        data = await _body(request)
        outcome = await service.releaser.release(
            request.match_info["id"], by=_reviewer(request), note=_note(data)
        )
        return await _answer(service, outcome)

    async def discard(request: web.Request) -> web.Response:
        data = await _body(request)
        outcome = await service.releaser.discard(
            request.match_info["id"], by=_reviewer(request), note=_note(data)
        )
        return await _answer(service, outcome)

    async def extend(request: web.Request) -> web.Response:
        data = await _body(request)
        ttl = data.get("ttl_s")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 365 * 24 * 3600:
            return web.json_response(
                {"error": "ttl_s must be an integer number of seconds in [1, 31536000]"}, status=400
            )
        return await _extend(request, service.clock() + ttl, _note(data))

    async def block(request: web.Request) -> web.Response:
        data = await _body(request)
        return await _extend(request, None, _note(data))

    async def _extend(request: web.Request, expires_at: float | None, note: str) -> web.Response:
        done = await service.repo.extend(
            request.match_info["id"],
            expires_at=expires_at,
            by=_reviewer(request),
            note=note,
            now=service.clock(),
        )
        if done.outcome != "ok":
            return _conflict(done.previous or "missing", entity_only=True)
        record = await service.repo.get(request.match_info["id"])
        if record is not None:
            await service.ctx.publisher.publish(service.added_event(record, None))
        return web.json_response(
            {"status": done.previous, "expires_at": expires_at, "permanent": expires_at is None}
        )

    base = "quarantine/records"
    return [
        AdminRoute("GET", base, list_records, "operator", "quarantine.read"),
        AdminRoute("GET", base + "/{id}", show, "operator", "quarantine.read"),
        AdminRoute("GET", "quarantine/summary", summary, "operator", "quarantine.read"),
        AdminRoute("GET", "quarantine/blacklist", blacklist, "operator", "quarantine.read"),
        AdminRoute("POST", base + "/{id}/review", review, "operator", "quarantine.review"),
        AdminRoute("POST", base + "/{id}/release", release, "operator", "quarantine.release"),
        AdminRoute("POST", base + "/{id}/discard", discard, "operator", "quarantine.discard"),
        AdminRoute("POST", base + "/{id}/extend", extend, "operator", "quarantine.extend"),
        AdminRoute("POST", base + "/{id}/block", block, "admin", "quarantine.block"),
    ]
