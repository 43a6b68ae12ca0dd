"""The opportunity discovery worker: market scans for the strategies a user owns."""

from __future__ import annotations

from common.service import WorkerContext
from workers.opportunity_discovery.service import OpportunityDiscovery

__all__ = ["OpportunityDiscovery", "create"]


def create(ctx: WorkerContext) -> OpportunityDiscovery:
    """The worker for ``ctx``."""
    return OpportunityDiscovery(ctx)
