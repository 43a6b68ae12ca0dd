"""What a worker is to the runtime: a router of handlers plus optional extras.

A worker package exposes ``create(ctx: WorkerContext) -> Service``. The runtime gives it its
dependencies in the :class:`WorkerContext` and asks the service for its handlers, any raw
queues it consumes (quarantine reads ``eventguard.dead``), its admin routes, the breakers that
should pause its consumer while open, and its background tasks (``start``/``stop``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web
from pydantic import BaseModel

from common.bus.broker import Broker
from common.bus.publisher import Publisher
from common.bus.router import RawHandler, Router
from common.config import Settings
from common.metrics import Metrics
from common.quarantine_view import QuarantineView
from common.reliability.guard import Guards
from common.store import Store
from schemas.envelope import Payload
from schemas.health import Heartbeat
from schemas.ops import AuditRecorded
from schemas.quarantine import QuarantineEntryAdded, QuarantineEntryReleased, QuarantineRequested

__all__ = [
    "BASE_CONSUMES",
    "BASE_PUBLISHES",
    "AdminRoute",
    "BaseService",
    "Service",
    "ServiceFactory",
    "WorkerContext",
]

# What every worker consumes (its quarantine view's broadcast routes, see BaseService) and may
# publish (its heartbeat, the admin audit trail, a quarantine request). A worker package adds
# its own to these in its ``CONSUMES``/``PUBLISHES`` (a test checks them against its router
# and the producer policy).
BASE_CONSUMES: tuple[type[Payload], ...] = (QuarantineEntryAdded, QuarantineEntryReleased)
BASE_PUBLISHES: tuple[type[Payload], ...] = (Heartbeat, AuditRecorded, QuarantineRequested)


@dataclass(frozen=True)
class WorkerContext:
    """The dependencies the runtime hands to a worker."""

    name: str
    settings: Settings
    store: Store
    broker: Broker
    publisher: Publisher
    metrics: Metrics
    # guard(name) for every external call: ``ctx.guards.guard("http:rabbitmq-mgmt").call(...)``.
    guards: Guards = field(default_factory=Guards)


@dataclass(frozen=True)
class AdminRoute:
    """One ``/admin/...`` route of a worker, with the least role allowed to call it."""

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    min_role: str = "operator"
    action: str = field(default="")
    # The pydantic models of the request (validated before the handler runs, see
    # common.validation) and of the 200 answer; the OpenAPI document is generated from them.
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    summary: str = ""


class Service(Protocol):
    """A worker as the runtime sees it."""

    name: str
    router: Router
    # What the quarantine blocks, as this worker knows it: admission refuses blocked producers.
    quarantine: QuarantineView

    def raw_consumers(self) -> Mapping[str, RawHandler]:
        """Queues consumed without envelope decoding (queue name -> handler)."""
        ...

    def admin_routes(self) -> Sequence[AdminRoute]:
        """Routes mounted under ``/admin`` on the ops server."""
        ...

    def critical_dependencies(self) -> Sequence[str]:
        """Dependencies whose open breaker pauses this worker's consumer."""
        ...

    def entity_error_rates(self) -> Mapping[str, float]:
        """Error rates of the entities this worker calls (``"ai_model:<name>"`` -> 0..1), carried
        by its heartbeat so health_monitor can alert on them."""
        ...

    async def start(self) -> None:
        """Start background tasks (timers, collectors)."""
        ...

    async def resync(self) -> None:
        """Re-read from Redis the state every replica must share (called periodically)."""
        ...

    async def stop(self) -> None:
        """Stop background tasks."""
        ...


ServiceFactory = Callable[[WorkerContext], Service]


class BaseService:
    """Defaults for the optional parts of :class:`Service`.

    Every worker keeps a :class:`QuarantineView` (``self.quarantine``, loaded by the runtime
    before consuming): its queue is bound to ``quarantine.entry.added``/``.released``, and
    the pipeline dead-letters events of a blocked producer as ``producer_blocked``. Use
    ``self.quarantine`` for other kinds too; do not register a second view.
    """

    name: str = ""

    def __init__(self, ctx: WorkerContext, *, now: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.router = Router()
        self.quarantine = QuarantineView(store=ctx.store, owner=ctx.name, now=now)
        self.quarantine.register(self.router)

    def raw_consumers(self) -> Mapping[str, RawHandler]:
        """None by default."""
        return {}

    def admin_routes(self) -> Sequence[AdminRoute]:
        """None by default."""
        return ()

    def critical_dependencies(self) -> Sequence[str]:
        """None by default."""
        return ()

    def entity_error_rates(self) -> Mapping[str, float]:
        """None by default."""
        return {}

    async def start(self) -> None:
        """Nothing to start by default."""

    async def resync(self) -> None:
        """Re-read the quarantine view (producer blocks) from Redis; the runtime calls this every
        ``replica_resync_s``. A service that keeps more shared state extends it."""
        await self.quarantine.resync()

    async def stop(self) -> None:
        """Nothing to stop by default."""
