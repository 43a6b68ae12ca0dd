"""Admin routes of the health monitor (under /admin/health/)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from aiohttp import web
from pydantic import ConfigDict, Field, StringConstraints

from common.problems import Problem
from common.security.http import PRINCIPAL
from common.service import AdminRoute
from common.validation import Answer, EmptyBody, RequestModel, body_of
from workers.health_monitor.alerts import AlertBook
from workers.health_monitor.collectors import HeartbeatBook
from workers.health_monitor.evaluator import Evaluator, Sample
from workers.health_monitor.rules import Rule


class MonitorAdmin(Protocol):
    """What the routes use of the health monitor (they never see the class itself)."""

    book: AlertBook
    evaluator: Evaluator
    heartbeats: HeartbeatBook
    rules: list[Rule]
    rules_by_name: dict[str, Rule]
    now: Callable[[], float]

__all__ = ["routes"]

_MAX_SILENCE_S = 30 * 24 * 3600


def _who(request: web.Request) -> str:
    principal = request.get(PRINCIPAL)
    return principal.subject if principal is not None else "unknown"


_Label = Annotated[str, StringConstraints(min_length=1, max_length=100)]
_Value = Annotated[str, StringConstraints(max_length=200)]


class SilenceBody(RequestModel):
    """Mute alerts whose labels match every matcher for ``duration_s`` seconds (at most 30
    days)."""

    model_config = ConfigDict(allow_inf_nan=False)

    matchers: dict[_Label, _Value] = Field(min_length=1, max_length=20)
    duration_s: float = Field(gt=0, le=_MAX_SILENCE_S)
    comment: str = Field(default="", max_length=500)


class AckAnswer(Answer):
    """Who acknowledged the alert."""

    acknowledged_by: str


class SilenceAnswer(Answer):
    """A silence as stored."""

    id: str
    matchers: dict[str, str]
    expires_at: float
    created_by: str
    comment: str
    created_at: float


class RemovedAnswer(Answer):
    """The silence is gone."""

    removed: bool


def routes(monitor: MonitorAdmin) -> list[AdminRoute]:
    """The routes, bound to ``monitor``."""

    async def list_alerts(_request: web.Request) -> web.Response:
        alerts = [json.loads(a.to_json()) for a in monitor.evaluator.alerts.values()]
        return web.json_response({"alerts": alerts})

    async def ack(request: web.Request) -> web.Response:
        alert = monitor.evaluator.alerts.get(request.match_info["fingerprint"])
        if alert is None:
            raise Problem(404, "no such alert", code="unknown_alert")
        alert.acknowledged_by = _who(request)
        await monitor.book.acknowledge(alert.fingerprint, alert.acknowledged_by)
        return web.json_response(AckAnswer(acknowledged_by=alert.acknowledged_by).model_dump())

    async def list_silences(_request: web.Request) -> web.Response:
        silences = [vars(s) for s in monitor.book.silences.values()]
        return web.json_response({"silences": silences})

    async def add_silence(request: web.Request) -> web.Response:
        body = body_of(request, SilenceBody)
        now = monitor.now()
        silence = await monitor.book.add_silence(
            dict(body.matchers),
            until=now + body.duration_s,
            by=_who(request),
            comment=body.comment,
            now=now,
        )
        return web.json_response(SilenceAnswer(**vars(silence)).model_dump(), status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        removed = await monitor.book.remove_silence(request.match_info["silence"])
        if not removed:
            raise Problem(404, "no such silence", code="unknown_silence")
        return web.json_response(RemovedAnswer(removed=removed).model_dump())

    async def list_rules(_request: web.Request) -> web.Response:
        return web.json_response({"rules": [r.model_dump(by_alias=True) for r in monitor.rules]})

    async def evaluate(request: web.Request) -> web.Response:
        rule = monitor.rules_by_name.get(request.match_info["rule"])
        if rule is None:
            raise Problem(404, "no such rule", code="unknown_rule")
        now = monitor.now()
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
        AdminRoute("GET", "health/alerts", list_alerts, "operator", "health.alerts.read"),
        AdminRoute(
            "POST",
            "health/alerts/{fingerprint}/ack",
            ack,
            "operator",
            "health.alert.ack",
            body=EmptyBody,
            response=AckAnswer,
        ),
        AdminRoute("GET", "health/silences", list_silences, "operator", "health.silences.read"),
        AdminRoute(
            "POST",
            "health/silences",
            add_silence,
            "operator",
            "health.silence",
            body=SilenceBody,
            response=SilenceAnswer,
        ),
        AdminRoute(
            "DELETE",
            "health/silences/{silence}",
            delete_silence,
            "operator",
            "health.unsilence",
            response=RemovedAnswer,
        ),
        AdminRoute("GET", "health/rules", list_rules, "operator", "health.rules.read"),
        AdminRoute(
            "POST",
            "health/rules/{rule}/eval",
            evaluate,
            "operator",
            "health.rule.eval",
            body=EmptyBody,
        ),
    ]


def _breached(rule: Any, value: float) -> str | None:
    if rule.critical is not None and rule.breached(value, rule.critical, clearing=False):
        return "critical"
    if rule.warning is not None and rule.breached(value, rule.warning, clearing=False):
        return "warning"
    return None
