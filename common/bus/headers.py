"""Header names the runtime writes on retried, dead-lettered and released messages."""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "ATTEMPT",
    "DEAD_AT",
    "DEAD_REASONS",
    "ERROR",
    "EXCEPTION",
    "ORIGINAL_EXCHANGE",
    "ORIGINAL_ROUTING_KEY",
    "ORIGIN_TRACEPARENT",
    "PRODUCER",
    "QUEUE",
    "REASON",
    "RELEASE_ID",
    "TRACEPARENT",
    "TRACESTATE",
    "WORKER",
    "DeadReason",
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
# W3C trace context (written when tracing is on, kept on copies either way); a quarantine
# release carries the dead message's traceparent in ORIGIN_TRACEPARENT, and spans link to it.
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
ORIGIN_TRACEPARENT: Final = PREFIX + "origin-traceparent"

# Every reason the runtime dead-letters a message for (docs/wire-contract.md says when each
# applies). Closed: every raise site names one of these, and a test checks the docs list them.
DeadReason = Literal[
    "invalid_json",
    "schema_violation",
    "unknown_type",
    "too_large",
    "unauthorized",
    "max_attempts",
    "handler_rejected",
    "bad_content_type",
    "bad_content_encoding",
    "type_mismatch",
    "routing_key_mismatch",
    "id_reused",
    "producer_blocked",
]
DEAD_REASONS: Final[frozenset[str]] = frozenset(get_args(DeadReason))
