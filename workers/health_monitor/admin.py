"""Admin routes of the health monitor (under /admin/health/)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from common.security.http import PRINCIPAL
from common.service import AdminRoute
from workers.health_monitor.evaluator import Sample

if TYPE_CHECKING:
    from workers.health_monitor.service import HealthMonitor

__all__ = ["routes"]

_MAX_SILENCE_S = 30 * 24 * 3600


def _who(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    return principal.subject if principal is not None else "unknown"


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='{"error": "body is not JSON"}') from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be an object"}')
    return body


def routes(monitor: HealthMonitor) -> list[AdminRoute]:
    """The routes, bound to ``monitor``."""

    async def list_alerts(_request: web.Request) -> web.Response:
        alerts = [json.loads(a.to_json()) for a in monitor.evaluator.alerts.values()]
        return web.json_response({"alerts": alerts})

    async def ack(request: web.Request) -> web.Response:
        alert = monitor.evaluator.alerts.get(request.match_info["fingerprint"])
        if alert is None:
            return web.json_response({"error": "no such alert"}, status=404)
        alert.acknowledged_by = _who(request)
        await monitor.book.acknowledge(alert.fingerprint, alert.acknowledged_by)
        return web.json_response({"acknowledged_by": alert.acknowledged_by})

    async def list_silences(_request: web.Request) -> web.Response:
        silences = [vars(s) for s in monitor.book.silences.values()]
        return web.json_response({"silences": silences})

    async def add_silence(request: web.Request) -> web.Response:
        body = await _json(request)
        matchers = body.get("matchers")
        duration = body.get("duration_s")
        if (
            not isinstance(matchers, dict)
            or not matchers
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in matchers.items())
        ):
            return web.json_response(
                {"error": "matchers must be a non-empty object of strings"}, status=400
            )
        if not isinstance(duration, int | float) or not 0 < duration <= _MAX_SILENCE_S:
            return web.json_response(
                {"error": f"duration_s must be in (0, {_MAX_SILENCE_S}]"}, status=400
            )
        now = monitor.clock()
        silence = await monitor.book.add_silence(
            matchers,
            until=now + duration,
            by=_who(request),
            comment=str(body.get("comment", ""))[:500],
            now=now,
        )
        return web.json_response(vars(silence), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        removed = await monitor.book.remove_silence(request.match_info["silence"])
        return web.json_response({"removed": removed}, status=200 if removed else 404)

    async def list_rules(_request: web.Request) -> web.Response:
        return web.json_response({"rules": [r.model_dump(by_alias=True) for r in monitor.rules]})

    async def evaluate(request: web.Request) -> web.Response:
        rule = monitor.rules_by_name.get(request.match_info["rule"])
        if rule is None:
            return web.json_response({"error": "no such rule"}, status=404)
        now = monitor.clock()
        samples: list[Sample] = [
            s for s in monitor.heartbeats.samples(now) if s.metric == rule.metric
        ]
        matching = [
            {"labels": dict(s.labels), "value": s.value}
            for s in samples
            if all(dict(s.labels).get(k) == v for k, v in rule.labels.items())
        ]
        result = [
            {**m, "breached": _breached(rule, float(m["value"]))}  # type: ignore[arg-type]
            for m in matching
        ]
        return web.json_response({"rule": rule.name, "series": result})

    return [
        AdminRoute("GET", "health/alerts", list_alerts, min_role="operator"),
        AdminRoute("POST", "health/alerts/{fingerprint}/ack", ack, min_role="operator"),
        AdminRoute("GET", "health/silences", list_silences, min_role="operator"),
        AdminRoute("POST", "health/silences", add_silence, min_role="operator"),
        AdminRoute("DELETE", "health/silences/{silence}", delete_silence, min_role="operator"),
        AdminRoute("GET", "health/rules", list_rules, min_role="operator"),
        AdminRoute("POST", "health/rules/{rule}/eval", evaluate, min_role="operator"),
    ]


def _breached(rule: Any, value: float) -> str | None:
    if rule.critical is not None and rule.breached(value, rule.critical, clearing=False):
        return "critical"
    if rule.warning is not None and rule.breached(value, rule.warning, clearing=False):
        return "warning"
    return None
