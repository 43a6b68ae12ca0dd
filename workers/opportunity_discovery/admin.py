"""Admin routes of the opportunity worker (under /admin/opportunity/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from common.problems import Problem
from common.service import AdminRoute

if TYPE_CHECKING:
    from workers.opportunity_discovery.service import OpportunityDiscovery

__all__ = ["routes"]


def routes(worker: OpportunityDiscovery) -> list[AdminRoute]:
    """The routes, bound to ``worker``."""

    async def scan_status(request: web.Request) -> web.Response:
        status = await worker.status(request.match_info["scan_id"])
        if status is None:
            raise Problem(404, "no such scan", code="unknown_scan")
        return web.json_response(status)

    return [AdminRoute("GET", "opportunity/scans/{scan_id}", scan_status, min_role="operator")]
