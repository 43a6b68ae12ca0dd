"""What the console's pages share: the :class:`Console` (its readers, actions and requests) and
the request key of the signed-in :class:`~eventguard.console.auth.Viewer`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from eventguard.console.actions import Actions
from eventguard.console.auth import ConsoleAuth, Viewer
from eventguard.console.fleet import FleetView
from eventguard.console.reads import AiModels, Alerts, Quarantine
from eventguard.console.requests import Requests
from eventguard.console.tap import Tap
from workers.quarantine.audit import AuditTrail

__all__ = ["VIEWER", "Console"]

VIEWER = web.RequestKey("viewer", Viewer)


@dataclass
class Console:
    """Everything the pages need."""

    auth: ConsoleAuth
    actions: Actions
    quarantine: Quarantine
    alerts: Alerts
    fleet: FleetView
    tap: Tap
    models: AiModels
    requests: Requests
    audit: AuditTrail
    now: Callable[[], float] = time.time
