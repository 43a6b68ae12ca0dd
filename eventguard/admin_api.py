"""The OpenAPI document of the whole fleet's admin API, without running anything (for
``eventguard schema export``); a running ops server serves the same document for the workers it
runs at ``/admin/openapi.json``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from common.config import Settings
from common.metrics import Metrics
from common.openapi import openapi_document
from common.ops import API_VERSION, ops_routes, rooted
from common.security.http import AdminAuth
from common.service import AdminRoute
from eventguard.consumes import inert_services

__all__ = ["admin_openapi"]


async def _never(_request: web.Request) -> web.Response:  # pragma: no cover - never mounted
    raise web.HTTPNotFound


def admin_openapi(settings: Settings | None = None) -> dict[str, Any]:
    """OpenAPI 3.1 of the ops routes and every worker's admin routes."""
    auth = AdminAuth(tokens=None, api_keys=None, metrics=Metrics(CollectorRegistry()))
    routes: list[AdminRoute] = rooted(ops_routes(auth, _never))
    for service in inert_services(settings).values():
        routes.extend(rooted(service.admin_routes()))
    return openapi_document(routes, version=API_VERSION)
