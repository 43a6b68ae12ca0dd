"""The quarantine worker: dead letters and misbehaving entities, recorded, reviewed, released."""

from __future__ import annotations

from common.service import BASE_CONSUMES, BASE_PUBLISHES, WorkerContext
from schemas.envelope import Payload
from schemas.health import AlertRaised
from schemas.ops import AuditRecorded
from schemas.quarantine import (
    QuarantineDiscardRequested,
    QuarantineEntryAdded,
    QuarantineEntryDiscarded,
    QuarantineEntryReleased,
    QuarantineReleaseRefused,
    QuarantineReleaseRequested,
    QuarantineRequested,
)
from workers.quarantine.service import QuarantineService

__all__ = ["CONSUMES", "PUBLISHES", "QuarantineService", "create"]

# The payloads of the types its queue is bound to, and of those its AMQP user may publish.
CONSUMES: tuple[type[Payload], ...] = (
    *BASE_CONSUMES,
    QuarantineRequested,
    QuarantineReleaseRequested,
    QuarantineDiscardRequested,
    AlertRaised,
    AuditRecorded,
)
PUBLISHES: tuple[type[Payload], ...] = (
    *BASE_PUBLISHES,
    QuarantineEntryAdded,
    QuarantineEntryReleased,
    QuarantineEntryDiscarded,
    QuarantineReleaseRefused,
)


def create(ctx: WorkerContext) -> QuarantineService:
    """The quarantine service for ``ctx``."""
    return QuarantineService(ctx)
