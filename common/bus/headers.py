"""Header names the runtime writes on retried and dead-lettered messages."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTEMPT",
    "DEAD_AT",
    "DEAD_REASONS",
    "ERROR",
    "EXCEPTION",
    "ORIGINAL_EXCHANGE",
    "ORIGINAL_ROUTING_KEY",
    "PRODUCER",
    "QUEUE",
    "REASON",
    "RELEASE_ID",
    "WORKER",
]

PREFIX: Final = "x-eventguard-"
ATTEMPT: Final = PREFIX + "attempt"
REASON: Final = PREFIX + "reason"
EXCEPTION: Final = PREFIX + "exception"
ERROR: Final = PREFIX + "error"
ORIGINAL_ROUTING_KEY: Final = PREFIX + "routing-key"
ORIGINAL_EXCHANGE: Final = PREFIX + "exchange"
WORKER: Final = PREFIX + "worker"
QUEUE: Final = PREFIX + "queue"
DEAD_AT: Final = PREFIX + "dead-at"
PRODUCER: Final = PREFIX + "producer"
RELEASE_ID: Final = PREFIX + "release-id"

# Every reason a message can be dead-lettered for by the pipeline.
DEAD_REASONS: Final = frozenset(
    {
        "invalid_json",
        "schema_violation",
        "unknown_type",
        "too_large",
        "unauthorized",
        "max_attempts",
        "handler_rejected",
        "producer_blocked",
    }
)
