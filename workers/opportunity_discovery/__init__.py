"""The opportunity discovery worker: market scans for the strategies a user owns."""

from __future__ import annotations

from common.service import BASE_CONSUMES, BASE_PUBLISHES, WorkerContext
from schemas.envelope import Payload
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import OpportunityFound, ScanCompleted, ScanRequested
from workers.opportunity_discovery.service import OpportunityDiscoveryService

__all__ = ["CONSUMES", "PUBLISHES", "OpportunityDiscoveryService", "create"]

# The payloads of the types its queue is bound to, and of those its AMQP user may publish.
CONSUMES: tuple[type[Payload], ...] = (
    *BASE_CONSUMES,
    ScanRequested,
    StrategyPurchased,
    StrategyRevoked,
)
PUBLISHES: tuple[type[Payload], ...] = (*BASE_PUBLISHES, OpportunityFound, ScanCompleted)


def create(ctx: WorkerContext) -> OpportunityDiscoveryService:
    """The worker for ``ctx``."""
    return OpportunityDiscoveryService(ctx)
