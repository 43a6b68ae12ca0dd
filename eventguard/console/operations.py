"""The handlers of the pages where operators pull the fleet's levers: alerts and silences, AI
models, and the audit trail (one method per route, named after it; mixed into
:class:`eventguard.console.pages.Pages`).

Silences and model switches are requests published for the signed-in person
(:mod:`eventguard.console.requests`); the handler waits briefly for the worker's answer, records
the action in the audit trail, then redirects to the page with a flash code saying what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web
from pydantic import ValidationError

from common.errors import EventGuardError
from common.logging import get_logger
from eventguard.console.auth import Viewer
from eventguard.console.requests import Answered
from eventguard.console.state import VIEWER, Console
from schemas.health import MAX_SILENCE_S
from workers.quarantine.audit import AuditQuery

__all__ = ["OperationsPages"]

_log = get_logger("eventguard.console")
_AUDIT_PAGE = 200


class OperationsPages:
    """Alerts, silences, AI models and audit."""

    c: Console
    render: Callable[..., web.Response]

    async def _audited(
        self, viewer: Viewer, action: str, route: str, target: dict[str, str], answer: Answered
    ) -> str:
        """Record the action; the flash code: ``done`` (answered) or ``requested`` (not yet)."""
        status = 200 if answer is not None else 202
        await self.c.requests.audit(
            viewer, action=action, route=route, target=target, status=status
        )
        return "done" if answer is not None else "requested"

    # -- alerts and silences -----------------------------------------------------------------

    async def get_alerts(self, request: web.Request) -> web.Response:
        shown, silenced, silences = await self.c.alerts.load()
        resolved = self.c.tap.recent("health.alert.resolved", 50)
        return self.render(
            request, "alerts.html", alerts=shown, silenced=silenced, silences=silences,
            resolved=resolved, error=request.query.get("error", "")[:200],
            flash=request.query.get("f", ""),
        )  # fmt: skip

    async def post_alerts_silences(self, request: web.Request) -> web.Response:
        viewer = request[VIEWER]
        fields = await self.c.auth.check_csrf(request, viewer)
        matchers: dict[str, str] = {}
        for part in fields.get("matchers", "").split(","):
            name, eq, value = part.strip().partition("=")
            if eq and name.strip() and value.strip():
                matchers[name.strip()[:100]] = value.strip()[:200]
        minutes = fields.get("minutes", "")
        if not matchers or not minutes.isdigit() or not 0 < int(minutes) * 60 <= MAX_SILENCE_S:
            error = f"matchers are name=value pairs; minutes is 1 to {MAX_SILENCE_S // 60}"
            raise web.HTTPSeeOther("/alerts?" + urlencode({"error": error}))
        try:
            answer = await self.c.requests.silence(
                viewer, matchers, duration_s=int(minutes) * 60, comment=fields.get("comment", "")
            )
        except ValidationError as error:  # more than 20 matchers, and the like
            message = str(error).splitlines()[0][:200]
            raise web.HTTPSeeOther("/alerts?" + urlencode({"error": message})) from None
        except EventGuardError as error:
            return self._unpublished(request, error)
        target = {"matchers": ",".join(f"{k}={v}" for k, v in sorted(matchers.items()))}
        flash = await self._audited(viewer, "health.silence", "/alerts/silences", target, answer)
        raise web.HTTPSeeOther(f"/alerts?f=silence-{flash}")

    async def post_alerts_silences_id_expire(self, request: web.Request) -> web.Response:
        viewer = request[VIEWER]
        await self.c.auth.check_csrf(request, viewer)
        silence_id = request.match_info["id"][:64]
        try:
            answer = await self.c.requests.expire_silence(viewer, silence_id)
        except EventGuardError as error:
            return self._unpublished(request, error)
        route = "/alerts/silences/{id}/expire"
        flash = await self._audited(viewer, "health.unsilence", route, {"id": silence_id}, answer)
        raise web.HTTPSeeOther(f"/alerts?f=expire-{flash}")

    # -- AI models ---------------------------------------------------------------------------

    async def get_models(self, request: web.Request) -> web.Response:
        snapshot = await self.c.fleet.snapshot()
        breakers = {
            name: state for w in snapshot.workers if w.worker == "ai_fallback"
            for name, state in w.breakers.items() if name.startswith("llm:")
        }  # fmt: skip
        states, spend = await self.c.models.load()
        per_model = {
            m.name: (next((s for n, s in breakers.items() if f":{m.name}:" in n), "-"), m)
            for m in states
        }
        heard = self.c.tap.recent("ai.completion.", 200)
        outcomes = [s for s in heard if s.type != "ai.completion.requested"][:50]
        return self.render(
            request, "models.html", models=per_model, breakers=breakers, outcomes=outcomes,
            spend=spend, actors=await self.c.models.per_actor(),
            flash=request.query.get("f", ""), model=request.query.get("m", "")[:200],
        )  # fmt: skip

    async def post_models_disable(self, request: web.Request) -> web.Response:
        return await self._switch(request, enable=False)

    async def post_models_enable(self, request: web.Request) -> web.Response:
        return await self._switch(request, enable=True)

    async def _switch(self, request: web.Request, *, enable: bool) -> web.Response:
        viewer = request[VIEWER]
        fields = await self.c.auth.check_csrf(request, viewer)
        name = fields.get("model", "")
        if name not in {m.name for m in self.c.models.settings.models}:
            return self.render(request, "missing.html", 404, what="AI model")
        try:
            answer = await self.c.requests.switch_model(
                viewer, name, enable=enable, note=fields.get("note", "")
            )
        except EventGuardError as error:
            return self._unpublished(request, error)
        verb = "enable" if enable else "disable"
        flash = await self._audited(
            viewer, f"ai.model.{verb}", f"/models/{verb}", {"model": name}, answer
        )
        raise web.HTTPSeeOther("/models?" + urlencode({"f": f"{verb}-{flash}", "m": name}))

    # -- audit -------------------------------------------------------------------------------

    async def get_audit(self, request: web.Request) -> web.Response:
        """The stored audit trail (what ``GET /admin/audit`` answers), newest first."""
        subject = request.query.get("subject", "").strip()[:200]
        action = request.query.get("action", "").strip()[:100]
        query = AuditQuery(subject=subject or None, action=action or None, limit=_AUDIT_PAGE)
        records = await self.c.audit.query(query)
        return self.render(
            request, "audit.html", records=records, subject=subject, action=action,
            limit=_AUDIT_PAGE, retention_s=self.c.audit.retention_s,
        )  # fmt: skip

    def _unpublished(self, request: web.Request, error: EventGuardError) -> web.Response:
        """The broker refused or is away: say so, change nothing."""
        _log.warning("console.publish_failed", error=type(error).__name__)
        return self.render(request, "missing.html", 503, what="broker answer; try again")
