"""The console's page and action handlers, one method per route (named after it).

Handlers fetch, templates render, actions publish events; every POST checks the CSRF token
first. The routes and their least roles are in :mod:`eventguard.console.app`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from redis.exceptions import RedisError

from common.errors import EventGuardError
from common.logging import get_logger
from eventguard.console.actions import done_count
from eventguard.console.auth import SignInRefused
from eventguard.console.operations import OperationsPages
from eventguard.console.reads import Filters
from eventguard.console.state import VIEWER, Console
from workers.quarantine.keys import ANY
from workers.quarantine.records import REASON_CODES, STATUSES

__all__ = ["Pages"]

_log = get_logger("eventguard.console")
_PAGE = 50
_KINDS = ("message", "ai_model", "exchange_source", "producer", "strategy", "event_type")


def _filters(query: Any) -> Filters:
    def pick(name: str, allowed: Any, default: str = ANY) -> str:
        value = str(query.get(name, default))
        return value if value == ANY or value in allowed else default

    since = str(query.get("since_h", ""))
    return Filters(
        status=pick("status", STATUSES, "quarantined"),
        kind=pick("kind", _KINDS),
        reason=pick("reason", REASON_CODES),
        event_type=str(query.get("event_type", ""))[:200],
        worker=str(query.get("worker", ""))[:200],
        producer=str(query.get("producer", ""))[:200],
        since_h=float(since) if since.replace(".", "", 1).isdigit() else None,
    )


class Pages(OperationsPages):
    """The handlers (named after their routes); alerts, models and audit are in
    :class:`~eventguard.console.operations.OperationsPages`."""

    def __init__(self, console: Console, render: Callable[..., web.Response]) -> None:
        self.c = console
        self.render = render

    # -- sign-in ---------------------------------------------------------------------------

    async def signin_form(self, request: web.Request) -> web.Response:
        return self.render(request, "signin.html", error="", next=_safe_next(request))

    async def signin(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        credential = str(form.get("credential", ""))
        target = _safe_next(request, str(form.get("next", "")))
        try:
            subject, role = await self.c.auth.identify(credential)
            token = await self.c.auth.open_session(subject, role)
        except SignInRefused as refused:
            return self.render(request, "signin.html", 401, error=str(refused), next=target)
        response = _see_other(target)
        self.c.auth.set_cookie(response, token)
        return response

    async def signin_link(self, request: web.Request) -> web.StreamResponse:
        try:
            subject, role = await self.c.auth.redeem_link(request.query.get("code", ""))
            token = await self.c.auth.open_session(subject, role)
        except SignInRefused as refused:
            return self.render(request, "signin.html", 401, error=str(refused), next="/fleet")
        response = _see_other("/fleet")
        self.c.auth.set_cookie(response, token)
        return response

    async def post_signout(self, request: web.Request) -> web.StreamResponse:
        viewer = request[VIEWER]
        await self.c.auth.check_csrf(request, viewer)
        await self.c.auth.close_session(viewer)
        response = _see_other("/signin")
        self.c.auth.clear_cookie(response)
        return response

    # -- probes ----------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """Ready when Redis answers and the broker is connected."""
        try:
            redis = bool(await self.c.auth.store.execute(lambda r: r.ping()))
        except (EventGuardError, OSError, RedisError):
            redis = False
        checks = {"redis": redis, "broker": self.c.tap.broker.connected}
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    # -- pages -----------------------------------------------------------------------------

    async def get_root(self, _request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/fleet")

    async def get_fleet(self, request: web.Request) -> web.Response:
        snapshot = await self.c.fleet.snapshot()
        dead = await self.c.quarantine.dead_per_reason()
        return self.render(request, "fleet.html", fleet=snapshot, dead=dead)

    async def get_quarantine(self, request: web.Request) -> web.Response:
        filters = _filters(request.query)
        raw = request.query.get("offset", "0")
        offset = min(int(raw), 10**9) if raw.isdigit() else 0
        total, rows = await self.c.quarantine.page(filters, offset=offset, limit=_PAGE)
        blacklist = await self.c.quarantine.blacklist()
        return self.render(
            request, "quarantine.html", filters=filters, total=total, rows=rows, offset=offset,
            page=_PAGE, statuses=STATUSES, kinds=_KINDS, reasons=sorted(REASON_CODES),
            scan_limit=self.c.quarantine.scan_limit, blacklist=blacklist,
            entity_kinds=[k for k in _KINDS if k != "message"],
            error=request.query.get("error", "")[:200], flash=request.query.get("f", ""),
            query=lambda **kw: urlencode({**request.query, **kw}),
        )  # fmt: skip

    async def get_quarantine_groups(self, request: web.Request) -> web.Response:
        groups = await self.c.quarantine.groups()
        return self.render(
            request, "groups.html", groups=groups, scan_limit=self.c.quarantine.scan_limit
        )

    async def get_quarantine_records_id(self, request: web.Request) -> web.Response:
        record = await self.c.quarantine.record(request.match_info["id"])
        if record is None:
            return self.render(request, "missing.html", 404, what="quarantine record")
        return self.render(request, "record.html", record=record, flash=request.query.get("f"))

    async def post_quarantine_records_id_release(self, request: web.Request) -> web.Response:
        return await self._one(request, "release")

    async def post_quarantine_records_id_discard(self, request: web.Request) -> web.Response:
        return await self._one(request, "discard")

    async def post_quarantine_groups_release(self, request: web.Request) -> web.Response:
        return await self._group(request, "release")

    async def post_quarantine_groups_discard(self, request: web.Request) -> web.Response:
        return await self._group(request, "discard")

    async def post_quarantine_blocks(self, request: web.Request) -> web.Response:
        viewer = request[VIEWER]
        fields = await self.c.auth.check_csrf(request, viewer)
        hours = fields.get("hours", "")
        ttl_s = None if fields.get("permanent") else int(hours) * 3600 if hours.isdigit() else -1
        if ttl_s is not None and not 0 < ttl_s <= 365 * 24 * 3600:
            error = "hours must be 1 to 8760, or tick permanent"
            raise web.HTTPSeeOther("/quarantine?" + urlencode({"error": error}))
        try:
            await self.c.actions.block(
                viewer, kind=fields.get("kind", ""), entity_id=fields.get("entity_id", "").strip(),
                reason=fields.get("reason", ""), ttl_s=ttl_s,
            )  # fmt: skip
        except ValueError as error:  # pydantic's ValidationError is one
            message = str(error).splitlines()[0][:200]
            raise web.HTTPSeeOther("/quarantine?" + urlencode({"error": message})) from None
        except EventGuardError as error:
            return self._unpublished(request, error)
        target = {"kind": fields.get("kind", ""), "entity_id": fields.get("entity_id", "").strip()}
        await self.c.requests.audit(
            viewer, action="quarantine.block", route="/quarantine/blocks", target=target
        )
        raise web.HTTPSeeOther("/quarantine?" + urlencode({"f": "block"}))

    async def _one(self, request: web.Request, action: str) -> web.Response:
        viewer = request[VIEWER]
        fields = await self.c.auth.check_csrf(request, viewer)
        record_id = request.match_info["id"]
        if await self.c.quarantine.record(record_id) is None:
            return self.render(request, "missing.html", 404, what="quarantine record")
        try:
            await self.c.actions.request(action, viewer, record_id, fields.get("note", ""))
        except EventGuardError as error:
            return self._unpublished(request, error)
        route = f"/quarantine/records/{{id}}/{action}"
        await self.c.requests.audit(
            viewer, action=f"quarantine.{action}", route=route, target={"id": record_id}
        )
        raise web.HTTPSeeOther(f"/quarantine/records/{record_id}?f={action}")

    async def _group(self, request: web.Request, action: str) -> web.Response:
        viewer = request[VIEWER]
        fields = await self.c.auth.check_csrf(request, viewer)
        reason, event_type, worker = (fields.get(k, "") for k in ("reason", "event_type", "worker"))
        members = await self.c.quarantine.members(reason, event_type, worker)
        label = f"{reason} / {event_type or '-'} / {worker or '-'}"
        job_id = await self.c.actions.start_group(action, viewer, label, members)
        target = {"group": label, "job": job_id, "records": str(len(members))}
        await self.c.requests.audit(
            viewer, action=f"quarantine.group_{action}", route=f"/quarantine/groups/{action}",
            target=target,
        )  # fmt: skip
        raise web.HTTPSeeOther(f"/quarantine/jobs/{job_id}")

    async def _job_state(self, request: web.Request) -> dict[str, Any] | None:
        job = await self.c.actions.job(request.match_info["id"])
        if job is None:
            return None
        statuses = await self.c.quarantine.statuses(job.members)
        done = done_count(statuses)
        reached = statuses.count("released" if job.action == "release" else "discarded")
        return {"job": job, "done": done, "reached": reached, "finished": done >= job.total}

    async def get_quarantine_jobs_id(self, request: web.Request) -> web.Response:
        state = await self._job_state(request)
        if state is None:
            return self.render(request, "missing.html", 404, what="group job")
        return self.render(request, "job.html", **state)

    async def get_quarantine_jobs_id_progress(self, request: web.Request) -> web.Response:
        state = await self._job_state(request)
        if state is None:
            return self.render(request, "missing.html", 404, what="group job")
        return self.render(request, "job_progress.html", **state)

    async def get_scans(self, request: web.Request) -> web.Response:
        requested = self.c.tap.recent("opportunity.scan.requested", 50)
        completed = {
            s.data.get("scan_id"): s for s in self.c.tap.recent("opportunity.scan.completed", 200)
        }
        found = self.c.tap.recent("opportunity.found", 50)
        return self.render(
            request, "scans.html", requested=requested, completed=completed, found=found
        )

    async def get_live(self, request: web.Request) -> web.Response:
        prefix = request.query.get("type", "")[:100]
        return self.render(request, "live.html", prefix=prefix, events=self.c.tap.recent(prefix))

    async def get_live_events(self, request: web.Request) -> web.Response:
        prefix = request.query.get("type", "")[:100]
        return self.render(request, "live_rows.html", events=self.c.tap.recent(prefix))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _safe_next(request: web.Request, value: str | None = None) -> str:
    target = value if value is not None else request.query.get("next", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/fleet"
    return target[:500]
