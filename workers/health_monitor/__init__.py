"""The health monitor worker: collect, evaluate rules, raise and resolve alerts."""

from __future__ import annotations

from common.service import BASE_CONSUMES, BASE_PUBLISHES, WorkerContext
from schemas.envelope import Payload
from schemas.health import (
    AlertRaised,
    AlertResolved,
    Heartbeat,
    SilenceCreated,
    SilenceExpired,
    SilenceExpireRequested,
    SilenceRequested,
)
from workers.health_monitor.service import HealthMonitorService

__all__ = ["CONSUMES", "PUBLISHES", "HealthMonitorService", "create"]

# The payloads of the types its queue is bound to, and of those its AMQP user may publish.
CONSUMES: tuple[type[Payload], ...] = (
    *BASE_CONSUMES,
    Heartbeat,
    SilenceRequested,
    SilenceExpireRequested,
)
PUBLISHES: tuple[type[Payload], ...] = (
    *BASE_PUBLISHES,
    AlertRaised,
    AlertResolved,
    SilenceCreated,
    SilenceExpired,
)


def create(ctx: WorkerContext) -> HealthMonitorService:
    """The health monitor for ``ctx``."""
    return HealthMonitorService(ctx)
