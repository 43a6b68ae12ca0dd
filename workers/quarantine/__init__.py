"""The quarantine worker: dead letters and misbehaving entities, recorded, reviewed, released."""

from __future__ import annotations

from common.service import WorkerContext
from workers.quarantine.service import QuarantineService

__all__ = ["QuarantineService", "create"]


def create(ctx: WorkerContext) -> QuarantineService:
    """The quarantine service for ``ctx``."""
    return QuarantineService(ctx)
