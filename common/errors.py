"""The one exception hierarchy of EventGuard.

Everything the runtime raises on purpose derives from :class:`EventGuardError`. The consumer
pipeline catches this root (and nothing broader without re-raising) and turns the control-flow
signals below into a message's fate:

* :class:`RetryLater` -> the message is re-published to a delay queue and retried later;
* :class:`Reject` -> the message is dead-lettered at once with its reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # common.bus imports this module; the reason type is only an annotation
    from common.bus.headers import DeadReason

__all__ = [
    "ConfigError",
    "DeliveryError",
    "EventGuardError",
    "ExternalCallError",
    "NotReplicated",
    "Reject",
    "RetryLater",
]


class EventGuardError(Exception):
    """Root of every error EventGuard raises on purpose."""


class ConfigError(EventGuardError):
    """Configuration is missing or invalid; start-up must stop."""


class ExternalCallError(EventGuardError):
    """A call that left the process failed (base for reliability errors)."""


class DeliveryError(EventGuardError):
    """The broker did not take a message (nack, returned as unroutable, channel closed)."""


class NotReplicated(EventGuardError):
    """A Redis write reached fewer replicas than ``WAIT`` asked for in time (retryable)."""

    retryable = True


class RetryLater(EventGuardError):
    """The handler cannot finish now but may later: redeliver after ``delay`` seconds."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Reject(EventGuardError):
    """The message can never succeed (poison): dead-letter it with ``reason``."""

    def __init__(self, detail: str, *, reason: DeadReason = "handler_rejected") -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason
