"""The OpenAPI document of the whole fleet's admin API, without running anything (for
``eventguard schema export``); a running ops server serves the same document for the workers it
runs at ``/admin/openapi.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from common.bus.memory import MemoryBroker
from common.bus.publisher import Publisher
from common.config import Settings
from common.metrics import Metrics
from common.openapi import openapi_document
from common.ops import API_VERSION, ops_routes, rooted
from common.security.http import AdminAuth
from common.service import AdminRoute, Service, WorkerContext
from common.store import Store
from workers.registry import WORKERS

__all__ = ["admin_openapi"]


async def _never(_request: web.Request) -> web.Response:  # pragma: no cover - never mounted
    raise web.HTTPNotFound


def _inert_services(settings: Settings) -> list[Service]:
    """Every worker's service on inert parts: built, never started, and its Redis client never
    connects (only the admin routes are read)."""
    metrics = Metrics(CollectorRegistry())
    broker = MemoryBroker()
    store = Store(Redis(), prefix="inspect:")
    services: list[Service] = []
    for name, factory in WORKERS.items():
        publisher = Publisher(broker, worker=name, user_id=None, metrics=metrics)
        services.append(factory(WorkerContext(name, settings, store, broker, publisher, metrics)))
    return services


def admin_openapi(settings: Settings | None = None) -> dict[str, Any]:
    """OpenAPI 3.1 of the ops routes and every worker's admin routes."""
    auth = AdminAuth(tokens=None, api_keys=None, metrics=Metrics(CollectorRegistry()))
    routes: list[AdminRoute] = rooted(ops_routes(auth, _never))
    for service in _inert_services(settings or Settings()):
        routes.extend(rooted(service.admin_routes()))
    return openapi_document(routes, version=API_VERSION)
