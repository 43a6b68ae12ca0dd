"""The health monitor worker: collect, evaluate rules, raise and resolve alerts."""

from __future__ import annotations

from common.service import WorkerContext
from workers.health_monitor.service import HealthMonitor

__all__ = ["HealthMonitor", "create"]


def create(ctx: WorkerContext) -> HealthMonitor:
    """The health monitor for ``ctx``."""
    return HealthMonitor(ctx)
