"""The per-worker HTTP server: probes, metrics, and the authenticated admin API.

* ``/healthz`` (liveness): the process can make progress: the event loop answers and the
  runtime's own loops (heartbeats, resync) are running. A broker or Redis outage is not a
  reason to restart: consumers re-register by themselves, so it stays 200 (and says what is
  down) while ``/readyz`` says not ready;
* ``/readyz``: broker connected, consumers active (not paused), Redis answers (the probes run
  at most once a second; callers in between get the cached answer, so the public endpoint
  cannot be used to load Redis and the broker);
* ``/metrics``: Prometheus text format, or OpenMetrics (with exemplars: the trace ids of
  observations made under a span) when the scrape's ``Accept`` asks for it;
* ``/admin/*``: the workers' admin routes plus ``/admin/stream``, a WebSocket of the events the
  workers publish. Every admin request is authenticated and checked against the access rules
  by the security middleware; anything without a rule is denied. The stream re-checks its
  token every ``security.stream_recheck_s`` and at its expiry, and closes with code 4401 and
  the reason (``token_expired``, ``token_revoked``) when it no longer holds;
* ``/admin/openapi.json`` (public): the OpenAPI 3.1 document of the admin API, generated from
  the routes' pydantic models, which also validate every request body and query string
  (:mod:`common.validation`). Every error is an RFC 9457 problem document
  (:mod:`common.problems`); every state-changing call is audited (:mod:`common.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client.exposition import choose_encoder
from pydantic import RootModel

from common.audit import STATE_CHANGING, Auditor
from common.logging import get_logger
from common.openapi import openapi_document
from common.problems import problem_middleware
from common.runtime import Runtime
from common.security import token_routes
from common.security.http import PRINCIPAL, WS_PROTOCOL, AdminAuth, Principal
from common.service import AdminRoute
from common.validation import Answer, endpoint
from schemas.envelope import Envelope

__all__ = ["EventStream", "OpsServer", "build_app", "ops_routes", "rooted"]

_log = get_logger("eventguard.ops")
_STREAM_QUEUE = 1_000
_READY_CACHE_S = 1.0
_WS_UNAUTHORIZED = 4401  # the application range (4000-4999): "unauthorized", like HTTP 401
API_VERSION = "1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EventStream:
    """Fans published events out to WebSocket clients; a slow client loses its oldest events."""

    def __init__(self) -> None:
        self._clients: set[asyncio.Queue[str]] = set()

    def publish(self, event: Envelope[Any]) -> None:
        """Offer ``event`` to every connected client (never blocks the publisher)."""
        if not self._clients:
            return
        text = event.model_dump_json(exclude={"actor"})
        for queue in self._clients:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(text)

    @contextlib.contextmanager
    def client(self) -> Any:
        """Register a client queue for the duration of a connection."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=_STREAM_QUEUE)
        self._clients.add(queue)
        try:
            yield queue
        finally:
            self._clients.discard(queue)


class _Cached:
    """The last answer of ``probe`` for ``ttl_s`` seconds; callers arriving while it runs share
    that one run (so a flood of calls costs one probe a second)."""

    def __init__(
        self,
        probe: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
        *,
        ttl_s: float,
        monotonic: Callable[[], float],
    ) -> None:
        self._probe = probe
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._value: dict[str, Any] | None = None
        self._at = 0.0
        self._running: asyncio.Task[dict[str, Any]] | None = None

    async def get(self) -> dict[str, Any]:
        """The cached answer, or a fresh one."""
        now = self._monotonic()
        if self._value is not None and now - self._at < self._ttl_s:
            return self._value
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._probe())
        value = await asyncio.shield(self._running)
        self._value, self._at = value, now
        return value


def build_app(
    runtime: Runtime,
    *,
    auth: AdminAuth,
    stream: EventStream,
    ready_cache_s: float = _READY_CACHE_S,
    monotonic: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The ops application for ``runtime``."""
    app = web.Application(
        middlewares=[problem_middleware, auth.middleware], client_max_size=1024**2
    )
    recheck_s = runtime.settings.security.stream_recheck_s

    async def probe() -> dict[str, Any]:
        checks = await runtime.ready()
        paused = [name for name, w in runtime.workers.items() if w.paused]
        return {"ready": all(checks.values()) and not paused, "checks": checks, "paused": paused}

    ready_cache = _Cached(probe, ttl_s=ready_cache_s, monotonic=monotonic)

    async def healthz(_request: web.Request) -> web.Response:
        ok = runtime.alive()
        body = {
            "status": "ok" if ok else "down",
            "instance": runtime.settings.instance,
            "broker": runtime.broker.connected,
            "consumers": runtime.consumers_attached(),
        }
        return web.json_response(body, status=200 if ok else 503)

    async def readyz(_request: web.Request) -> web.Response:
        body = await ready_cache.get()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        payload = encode(runtime.metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": content_type})

    async def workers(_request: web.Request) -> web.Response:
        answer = Workers(
            {
                name: WorkerInfo(
                    queues=w.queues,
                    types=list(w.service.router.event_types),
                    paused=w.paused,
                    in_flight=w.pipeline.in_flight,
                )
                for name, w in runtime.workers.items()
            }
        )
        return web.json_response(answer.model_dump())

    async def stream_events(request: web.Request) -> web.WebSocketResponse:
        principal = request[PRINCIPAL]
        ws = web.WebSocketResponse(heartbeat=20, protocols=(WS_PROTOCOL,))
        await ws.prepare(request)
        with stream.client() as queue:
            reader = asyncio.create_task(_drain_incoming(ws))
            try:
                await _pump(ws, queue, reader, auth=auth, principal=principal, every_s=recheck_s)
            finally:
                reader.cancel()
        return ws

    documented: list[AdminRoute] = []

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(openapi_document(documented, version=API_VERSION))

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/openapi.json", openapi)
    auth.allow("GET", "/admin/stream", "operator")
    app.router.add_get("/admin/stream", stream_events)
    owner = next(iter(runtime.workers.values()), None)
    ops_auditor = Auditor(owner.publisher if owner else None, worker=_owner_name(runtime))
    documented.extend(_mount(app, auth, ops_routes(auth, workers), ops_auditor))
    for name, running in runtime.workers.items():
        auditor = Auditor(running.publisher, worker=name)
        documented.extend(_mount(app, auth, running.service.admin_routes(), auditor))
    return app


class WorkerInfo(Answer):
    """One worker of this process."""

    queues: list[str]
    types: list[str]
    paused: bool
    in_flight: int


class Workers(RootModel[dict[str, WorkerInfo]]):
    """The workers of this process, by name."""


def ops_routes(auth: AdminAuth, workers: Handler) -> list[AdminRoute]:
    """The ops server's own admin routes (``workers`` answers ``GET /admin/workers``)."""
    return [
        AdminRoute(
            "GET",
            "workers",
            workers,
            "operator",
            "workers.read",
            response=Workers,
            summary="the workers of this process",
        ),
        *token_routes.routes(auth),
    ]


def rooted(routes: Sequence[AdminRoute]) -> list[AdminRoute]:
    """``routes`` with their paths under ``/admin/``, as mounted (for the OpenAPI document)."""
    return [replace(route, path="/admin/" + route.path.lstrip("/")) for route in routes]


def _owner_name(runtime: Runtime) -> str:
    return next(iter(runtime.workers), "ops")


def _mount(
    app: web.Application, auth: AdminAuth, routes: Sequence[AdminRoute], auditor: Auditor
) -> list[AdminRoute]:
    for route in routes:
        path = "/admin/" + route.path.lstrip("/")
        auth.allow(route.method, path, route.min_role)
        handler = endpoint(route)
        if route.method.upper() in STATE_CHANGING:
            action = route.action or f"{route.method.lower()}:{route.path}"
            handler = auditor.wrap(handler, action=action)
        app.router.add_route(route.method, path, handler)
    return rooted(routes)


async def _pump(
    ws: web.WebSocketResponse,
    queue: asyncio.Queue[str],
    reader: asyncio.Task[None],
    *,
    auth: AdminAuth,
    principal: Principal,
    every_s: float,
) -> None:
    """Send queued events until the client leaves or its credential stops holding."""
    while not ws.closed and not reader.done():
        why = await auth.recheck(principal)
        if why is not None:
            _log.info("stream.closed", subject=principal.subject, reason=why)
            await ws.close(code=_WS_UNAUTHORIZED, message=why.encode())
            return
        wait = every_s
        if principal.claims is not None:
            wait = max(0.0, min(wait, principal.claims.exp - auth.now()))
        getter = asyncio.create_task(queue.get())
        done, _ = await asyncio.wait(
            {getter, reader}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            await ws.send_str(getter.result())
        else:
            getter.cancel()


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type in {WSMsgType.CLOSE, WSMsgType.ERROR}:
            return


class OpsServer:
    """Runs the ops application on ``host:port`` for the lifetime of a context."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner = web.AppRunner(app, access_log=None)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[OpsServer]:
        """Listen, yield (with :attr:`port` set to the bound port), then close."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port nowhere else
        if server is not None and self.port == 0:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        _log.info("ops.listening", host=self.host, port=self.port)
        try:
            yield self
        finally:
            await self._runner.cleanup()
