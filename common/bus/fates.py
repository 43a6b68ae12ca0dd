"""A message's two fates besides the ack: a retry through a delay queue, or a dead letter.

A retry is a copy of the message re-published to the delay queue of its tier, with the attempt
count and the original routing in headers, then the original is acked; past the last attempt
it becomes a dead letter. A dead letter is published to the dead-letter exchange with its
reason in headers, then acked; if even that publish fails, the message is rejected so the
queue's own dead-lettering (at-least-once, without our headers) keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from common import tracing as _tracing
from common.bus import headers as h
from common.bus.broker import Broker
from common.bus.message import HeaderValue, IncomingMessage
from common.bus.topology import DEAD_LETTER_EXCHANGE
from common.errors import EventGuardError
from common.logging import get_logger
from common.metrics import Metrics

__all__ = ["Fates"]

_log = get_logger("eventguard.pipeline")
_MAX_ERROR_CHARS = 1_000


class Fates:
    """Retries and dead letters of one worker's queue."""

    def __init__(
        self,
        *,
        worker: str,
        broker: Broker,
        user_id: str | None,
        max_attempts: int,
        metrics: Metrics,
        retry_queues: Mapping[float, str],
        producer_of: Callable[[IncomingMessage], str],
        dead_letter_exchange: str = DEAD_LETTER_EXCHANGE,
    ) -> None:
        self.worker = worker
        self.broker = broker
        self.user_id = user_id
        self.max_attempts = max_attempts
        self.retry_queues = dict(sorted(retry_queues.items()))  # delay in seconds -> queue
        self.producer_of = producer_of  # who published it (relayed copies: the original)
        self.dead_letter_exchange = dead_letter_exchange
        self._dead_letters = metrics.runtime.dead_letters

    async def retry(
        self,
        message: IncomingMessage,
        attempt: int,
        reason: str,
        delay: float | None = None,
        exception: str = "RetryLater",
    ) -> str:
        """Re-publish ``message`` to the delay queue for ``attempt`` (or the first tier of at
        least ``delay`` seconds), then ack it; past the last attempt, dead-letter it. Returns
        the outcome: ``retry`` or ``dead_letter``."""
        if attempt >= self.max_attempts or not self.retry_queues:
            await self.dead_letter(message, "max_attempts", reason, exception, attempt)
            return "dead_letter"
        queue = self.retry_queue(attempt, delay)
        retry_headers = {
            **message.headers,
            h.ATTEMPT: attempt,
            h.ORIGINAL_ROUTING_KEY: _original_routing_key(message),
            h.ORIGINAL_EXCHANGE: _original_exchange(message),
            h.PRODUCER: self.producer_of(message),
        }
        try:
            await self.broker.publish(
                message.to_outgoing(
                    exchange="", routing_key=queue, headers=retry_headers, user_id=self.user_id
                )
            )
        except (EventGuardError, OSError, TimeoutError) as error:
            _log.warning("retry.publish_failed", error=repr(error))
            await message.reject(requeue=True)
            return "retry"
        _log.info("message.retry_scheduled", attempt=attempt, queue=queue, reason=reason[:200])
        if _tracing.tracer is not None:
            _tracing.record_fate("retry", attempt=attempt, queue=queue, reason=reason[:200])
        await message.ack()
        return "retry"

    def retry_queue(self, attempt: int, delay: float | None) -> str:
        """The delay queue of ``attempt``'s tier, or of the first tier of at least ``delay``."""
        tiers = list(self.retry_queues)
        if delay is not None:
            for tier in tiers:
                if tier >= delay:
                    return self.retry_queues[tier]
            return self.retry_queues[tiers[-1]]
        return self.retry_queues[tiers[min(attempt - 1, len(tiers) - 1)]]

    async def dead_letter(
        self,
        message: IncomingMessage,
        reason: h.DeadReason,
        detail: str,
        exception: str,
        attempt: int,
    ) -> None:
        """Publish ``message`` to the dead-letter exchange with its reason, then ack it."""
        dead_headers: dict[str, HeaderValue] = {
            **message.headers,
            h.REASON: reason,
            h.EXCEPTION: exception,
            h.ERROR: detail[:_MAX_ERROR_CHARS],
            h.ORIGINAL_ROUTING_KEY: _original_routing_key(message),
            h.ORIGINAL_EXCHANGE: _original_exchange(message),
            h.ATTEMPT: attempt,
            h.WORKER: self.worker,
            h.QUEUE: message.queue,
            h.DEAD_AT: datetime.now(UTC).isoformat(),
            h.PRODUCER: self.producer_of(message),
        }
        self._dead_letters.labels(self.worker, reason).inc()
        _log.warning("message.dead_lettered", reason=reason, detail=detail[:200], attempt=attempt)
        if _tracing.tracer is not None:
            _tracing.record_fate("dead_letter", reason=reason, detail=detail[:200], attempt=attempt)
        try:
            await self.broker.publish(
                message.to_outgoing(
                    exchange=self.dead_letter_exchange,
                    routing_key=str(dead_headers[h.ORIGINAL_ROUTING_KEY]),
                    headers=dead_headers,
                    user_id=self.user_id,
                )
            )
        except (EventGuardError, OSError, TimeoutError) as error:
            # The queue dead-letters it itself (at-least-once), without our headers.
            _log.error("dead_letter.publish_failed", error=repr(error))
            await message.reject(requeue=False)
            return
        await message.ack()


def _original_routing_key(message: IncomingMessage) -> str:
    return str(message.headers.get(h.ORIGINAL_ROUTING_KEY, message.routing_key))


def _original_exchange(message: IncomingMessage) -> str:
    return str(message.headers.get(h.ORIGINAL_EXCHANGE, message.exchange))
