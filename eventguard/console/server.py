"""Assembling and serving the console: ``eventguard console`` and the demo's console.

:func:`console_serving` wires the pieces over a store and a broker that the caller owns (the
demo passes its in-memory ones, ``eventguard console`` real ones) and serves until the context
ends. A port already in use is a :class:`~common.errors.ConfigError` naming the port and the
setting, which the CLI prints as one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from common.bus.amqp import AmqpBroker
from common.bus.broker import Broker
from common.bus.publisher import Publisher
from common.config import Settings, require_production
from common.errors import ConfigError
from common.logging import get_logger
from common.metrics import Metrics
from common.reliability.guard import Guards
from common.runtime import install_signal_handlers
from common.security.apikeys import ApiKeyStore
from common.security.tokens import TokenService
from common.store import Store
from eventguard.console.actions import Actions
from eventguard.console.app import build_app
from eventguard.console.auth import ConsoleAuth
from eventguard.console.fleet import FleetView
from eventguard.console.reads import AiModels, Alerts, Quarantine
from eventguard.console.requests import Requests
from eventguard.console.state import Console
from eventguard.console.tap import Tap
from workers.quarantine.audit import AuditTrail
from workers.registry import WORKERS

__all__ = ["Serving", "console_serving", "serve_console"]

_log = get_logger("eventguard.console")


@dataclass(frozen=True)
class Serving:
    """A running console: its pieces and its URL."""

    console: Console
    url: str


def _console(
    settings: Settings,
    *,
    store: Store,
    broker: Broker,
    metrics: Metrics,
    declare_exchanges: bool = True,
) -> Console:
    security = settings.security
    tokens = TokenService(security, store=store) if security.jwt_signing_key else None
    auth = ConsoleAuth(
        store=store,
        tokens=tokens,
        api_keys=ApiKeyStore(store, default_ttl_s=security.api_key_ttl_s),
        session_ttl_s=security.session_ttl_s,
        secure_cookie=settings.console.secure_cookie,
    )
    publisher = Publisher(broker, worker="console", user_id=settings.broker_user, metrics=metrics,
                          exchange=settings.exchange)  # fmt: skip
    tap = Tap(
        broker,
        exchange=settings.exchange,
        instance=settings.instance,
        declare_exchanges=declare_exchanges,
    )
    actions = Actions(publisher=publisher, store=store)
    fleet = FleetView(
        tap,
        broker,
        workers=sorted(WORKERS),
        management=settings.health_monitor,
        stale_after_s=settings.health_monitor.stale_heartbeat_s,
    )
    return Console(
        auth=auth,
        actions=actions,
        quarantine=Quarantine(store, scan_limit=settings.console.scan_limit),
        alerts=Alerts(store),
        fleet=fleet,
        tap=tap,
        models=AiModels(store, settings.ai_fallback),
        requests=Requests(publisher, wait_s=settings.console.answer_wait_s),
        audit=AuditTrail(store, retention_s=settings.quarantine.audit_retention_s, now=time.time),
    )


@contextlib.asynccontextmanager
async def console_serving(
    settings: Settings,
    *,
    store: Store,
    broker: Broker,
    metrics: Metrics,
    host: str | None = None,
    port: int | None = None,
    declare_exchanges: bool = True,
) -> AsyncIterator[Serving]:
    """Serve the console over ``store`` and ``broker`` for the lifetime of the context.

    ``declare_exchanges=False`` for a deployment whose topology is applied beforehand (the
    console's RabbitMQ user may declare only its own ``eventguard.console.*`` queues).
    """
    console = _console(
        settings, store=store, broker=broker, metrics=metrics, declare_exchanges=declare_exchanges
    )
    host = host if host is not None else settings.console.host
    port = port if port is not None else settings.console.port
    await console.tap.start()
    runner = web.AppRunner(build_app(console), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"console port {port} on {host} is busy: set EVENTGUARD_CONSOLE__PORT "
                    "to a free port (0 picks one)"
                ) from None
            raise
        bound = port
        server = site._server  # aiohttp exposes the bound port nowhere else
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            bound = int(sockets[0].getsockname()[1])
        url = settings.console.base_url or f"http://{host}:{bound}"
        _log.info("console.listening", url=url)
        yield Serving(console, url.rstrip("/"))
    finally:
        await console.actions.close()
        await console.tap.stop()
        await runner.cleanup()


async def serve_console(settings: Settings) -> int:
    """``eventguard console``: the real broker and Redis, until SIGTERM or SIGINT."""
    require_production(settings)
    metrics = Metrics()
    broker_url = settings.broker_url.get_secret_value() if settings.broker_url else ""
    broker = AmqpBroker(broker_url, metrics=metrics, name=f"eventguard-console-{settings.instance}")
    guards = Guards(metrics=metrics, overrides=settings.reliability.dependencies)
    store = Store.from_settings(settings, guard=guards.guard("redis"))
    guards.bind_store(store)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    await broker.start()
    try:
        async with console_serving(
            settings, store=store, broker=broker, metrics=metrics, declare_exchanges=False
        ) as s:
            print(f"eventguard console on {s.url}", flush=True)
            await stop.wait()
    finally:
        await broker.close()
        await store.close()
    return 0
