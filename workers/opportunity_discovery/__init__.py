"""The opportunity discovery worker: market scans for the strategies a user owns."""

from __future__ import annotations

from common.service import WorkerContext
from workers.opportunity_discovery.service import OpportunityDiscoveryService

__all__ = ["OpportunityDiscoveryService", "create"]


def create(ctx: WorkerContext) -> OpportunityDiscoveryService:
    """The worker for ``ctx``."""
    return OpportunityDiscoveryService(ctx)
