"""The health monitor worker: collect, evaluate rules, raise and resolve alerts."""

from __future__ import annotations

from common.service import WorkerContext
from workers.health_monitor.service import HealthMonitorService

__all__ = ["HealthMonitorService", "create"]


def create(ctx: WorkerContext) -> HealthMonitorService:
    """The health monitor for ``ctx``."""
    return HealthMonitorService(ctx)
