"""The pipeline of a replica's own queue (broadcast types: every replica gets a copy).

The same stages as :class:`~common.bus.pipeline.Pipeline`, without the idempotency claim (each
replica must handle its copy), and with one difference of fate: a copy that fails, or is
poison, is dropped (acked and counted), never retried or dead-lettered. The work queue holds
the durable copy of the same event, which the worker handles once under its claim and which
alone is retried, dead-lettered and recorded by quarantine; a replica whose copy failed
converges at its next resync from Redis.
"""

from __future__ import annotations

from common.bus import headers as h
from common.bus.fates import Fates
from common.bus.message import IncomingMessage
from common.bus.pipeline import Pipeline
from common.logging import get_logger

__all__ = ["DroppedCopies", "ReplicaPipeline"]

_log = get_logger("eventguard.pipeline")


class DroppedCopies(Fates):
    """A replica's copy that would be retried or dead-lettered is acked and dropped instead."""

    async def retry(
        self,
        message: IncomingMessage,
        attempt: int,
        reason: str,
        delay: float | None = None,
        exception: str = "RetryLater",
    ) -> str:
        _log.info("replica.copy_dropped", reason=reason[:200], exception=exception)
        await message.ack()
        return "dropped"

    async def dead_letter(
        self,
        message: IncomingMessage,
        reason: h.DeadReason,
        detail: str,
        exception: str,
        attempt: int,
    ) -> None:
        _log.info("replica.copy_dropped", reason=reason, detail=detail[:200])
        await message.ack()


class ReplicaPipeline(Pipeline):
    """Handles a replica's copies of broadcast events; failures drop the copy."""

    fates_class = DroppedCopies
