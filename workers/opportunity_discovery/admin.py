"""Admin routes of the opportunity worker (under /admin/opportunity/)."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from common.problems import Problem
from common.service import AdminRoute

__all__ = ["ScanStatus", "routes"]


class ScanStatus(Protocol):
    """What the routes use of the worker: a scan's progress."""

    async def status(self, scan_id: str) -> dict[str, str] | None:
        """A scan's progress, if known."""
        ...


def routes(worker: ScanStatus) -> list[AdminRoute]:
    """The routes, bound to ``worker``."""

    async def scan_status(request: web.Request) -> web.Response:
        status = await worker.status(request.match_info["scan_id"])
        if status is None:
            raise Problem(404, "no such scan", code="unknown_scan")
        return web.json_response(status)

    return [AdminRoute("GET", "opportunity/scans/{scan_id}", scan_status, min_role="operator")]
