"""The console's web application: routes, the session middleware, templates, headers.

Every route has a least role (:data:`ROUTES`); the middleware turns the session cookie into a
:class:`~eventguard.console.auth.Viewer`, sends a visitor without a session to ``/signin`` and
answers 403 to a role too low; the handlers (:mod:`eventguard.console.pages`) check the CSRF
token of every POST. Handlers fetch, templates render, actions publish events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from common.logging import get_logger
from common.security.roles import Role
from eventguard.console.pages import Pages
from eventguard.console.state import VIEWER, Console

__all__ = ["ROUTES", "build_app"]

_HERE = Path(__file__).parent
_log = get_logger("eventguard.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (method, path) -> least role; a route missing here is refused (default deny).
ROUTES: dict[tuple[str, str], Role] = {
    ("GET", "/"): Role.USER,
    ("GET", "/fleet"): Role.USER,
    ("GET", "/quarantine"): Role.USER,
    ("GET", "/quarantine/groups"): Role.USER,
    ("GET", "/quarantine/records/{id}"): Role.USER,
    ("POST", "/quarantine/records/{id}/release"): Role.OPERATOR,
    ("POST", "/quarantine/records/{id}/discard"): Role.OPERATOR,
    ("POST", "/quarantine/groups/release"): Role.OPERATOR,
    ("POST", "/quarantine/groups/discard"): Role.OPERATOR,
    ("POST", "/quarantine/blocks"): Role.ADMIN,
    ("GET", "/quarantine/jobs/{id}"): Role.USER,
    ("GET", "/quarantine/jobs/{id}/progress"): Role.USER,
    ("GET", "/alerts"): Role.USER,
    ("POST", "/alerts/silences"): Role.OPERATOR,
    ("POST", "/alerts/silences/{id}/expire"): Role.OPERATOR,
    ("GET", "/models"): Role.USER,
    ("POST", "/models/disable"): Role.OPERATOR,
    ("POST", "/models/enable"): Role.OPERATOR,
    ("GET", "/scans"): Role.USER,
    ("GET", "/live"): Role.USER,
    ("GET", "/live/events"): Role.USER,
    ("GET", "/audit"): Role.USER,
    ("POST", "/signout"): Role.USER,
}
_OPEN = frozenset(
    {
        ("GET", "/signin"), ("POST", "/signin"), ("GET", "/signin/link"),
        ("GET", "/healthz"), ("GET", "/readyz"),
    }
)  # fmt: skip
NAV = (
    ("/fleet", "Fleet"), ("/quarantine", "Quarantine"), ("/alerts", "Alerts"),
    ("/models", "AI models"), ("/scans", "Scans"), ("/live", "Live"), ("/audit", "Audit"),
)  # fmt: skip


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = lambda t: (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(t))) if t not in {"", None} else "-"
    )
    env.globals["nav"] = NAV
    env.globals["inf"] = float("inf")
    return env


def build_app(console: Console) -> web.Application:
    """The console application."""
    env = _templates()
    app = web.Application(middlewares=[_security(console)], client_max_size=256 * 1024)

    def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
        viewer = request.get(VIEWER)
        html = env.get_template(name).render(viewer=viewer, path=request.path, **context)
        return web.Response(text=html, content_type="text/html", status=status)

    pages = Pages(console, render)
    for (method, path), _role in ROUTES.items():
        app.router.add_route(method, path, getattr(pages, _handler_name(method, path)))
    app.router.add_get("/signin", pages.signin_form)
    app.router.add_post("/signin", pages.signin)
    app.router.add_get("/signin/link", pages.signin_link)
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/readyz", pages.readyz)
    app.router.add_static("/static", _HERE / "static", append_version=False)
    return app


def _handler_name(method: str, path: str) -> str:
    words = [w for w in path.replace("{", "").replace("}", "").split("/") if w]
    return method.lower() + "_" + ("_".join(words) or "root")


def _security(console: Console) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/static/") or (request.method, request.path) in _OPEN:
            return await _headers(await handler(request))
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else request.path
        required = ROUTES.get((request.method, canonical))
        if required is None:
            raise web.HTTPNotFound
        viewer = await console.auth.viewer(request)
        if viewer is None:
            if request.method == "GET":
                raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
            raise web.HTTPUnauthorized(text="sign in first")
        if not viewer.can(required):
            _log.warning("console.forbidden", path=request.path[:200], role=viewer.role.value)
            raise web.HTTPForbidden(text=f"{required.value} or above only")
        request[VIEWER] = viewer
        return await _headers(await handler(request))

    return middleware


async def _headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response
