"""The per-worker HTTP server: probes, metrics, and the authenticated admin API.

* ``/healthz`` (liveness): the process can make progress: the event loop answers and the
  runtime's own loops (heartbeats, resync) are running. A broker or Redis outage is not a
  reason to restart: consumers re-register by themselves, so it stays 200 (and says what is
  down) while ``/readyz`` says not ready;
* ``/readyz``: broker connected, consumers active (not paused), Redis answers;
* ``/metrics``: Prometheus text format;
* ``/admin/*``: the workers' admin routes plus ``/admin/stream``, a WebSocket of the events the
  workers publish. Every admin request is authenticated and checked against the access rules
  by the security middleware; anything without a rule is denied.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.logging import get_logger
from common.runtime import Runtime
from common.security.http import WS_PROTOCOL, AdminAuth
from common.service import AdminRoute
from schemas.envelope import Envelope

__all__ = ["EventStream", "OpsServer", "build_app"]

_log = get_logger("eventguard.ops")
_STREAM_QUEUE = 1_000


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


def build_app(runtime: Runtime, *, auth: AdminAuth, stream: EventStream) -> web.Application:
    """The ops application for ``runtime``."""
    app = web.Application(middlewares=[auth.middleware], client_max_size=1024**2)

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
        checks = await runtime.ready()
        paused = [name for name, w in runtime.workers.items() if w.paused]
        ready = all(checks.values()) and not paused
        body = {"ready": ready, "checks": checks, "paused": paused}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        payload = generate_latest(runtime.metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def workers(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                name: {
                    "queues": w.queues,
                    "types": w.service.router.event_types,
                    "paused": w.paused,
                    "in_flight": w.pipeline.in_flight,
                }
                for name, w in runtime.workers.items()
            }
        )

    async def stream_events(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, protocols=(WS_PROTOCOL,))
        await ws.prepare(request)
        with stream.client() as queue:
            reader = asyncio.create_task(_drain_incoming(ws))
            try:
                while not ws.closed and not reader.done():
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait(
                        {getter, reader}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter in done:
                        await ws.send_str(getter.result())
                    else:
                        getter.cancel()
            finally:
                reader.cancel()
        return ws

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    auth.allow("GET", "/admin/workers", "operator")
    app.router.add_get("/admin/workers", workers)
    auth.allow("GET", "/admin/stream", "operator")
    app.router.add_get("/admin/stream", stream_events)
    for running in runtime.workers.values():
        _mount(app, auth, running.service.admin_routes())
    return app


def _mount(app: web.Application, auth: AdminAuth, routes: Sequence[AdminRoute]) -> None:
    for route in routes:
        path = "/admin/" + route.path.lstrip("/")
        auth.allow(route.method, path, route.min_role)
        app.router.add_route(route.method, path, route.handler)


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
