"""Errors of the reliability toolkit (all under common.errors.ExternalCallError)."""

from __future__ import annotations

from common.errors import ExternalCallError

__all__ = [
    "BatchError",
    "BulkheadFull",
    "CallTimeout",
    "CircuitOpen",
    "RetryError",
]


class CircuitOpen(ExternalCallError):
    """The breaker refused the call; ``remaining_s`` until it may let a probe through.

    ``retry_after_s`` is the same figure, under the name the retry layer and the consumer
    pipeline read as a hint (``inf`` for a breaker forced open by hand)."""

    def __init__(self, name: str, remaining_s: float, state: str = "open") -> None:
        super().__init__(f"circuit {name!r} is {state}; retry in {remaining_s:.3f}s")
        self.name = name
        self.remaining_s = remaining_s
        self.state = state

    @property
    def retry_after_s(self) -> float:
        """Seconds until the breaker may let a call through."""
        return self.remaining_s


class BulkheadFull(ExternalCallError):
    """Too many calls in flight and too many waiting (or a wait for a slot timed out)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"bulkhead {name!r} is full")
        self.name = name


class CallTimeout(ExternalCallError, TimeoutError):
    """An external call took longer than its timeout (also a ``TimeoutError``)."""

    def __init__(self, name: str, timeout_s: float) -> None:
        super().__init__(f"call to {name or 'dependency'!r} timed out after {timeout_s:.3f}s")
        self.name = name
        self.timeout_s = timeout_s


class RetryError(ExternalCallError):
    """A retry policy was asked to make zero attempts."""


class BatchError(ExternalCallError):
    """A batch processor broke its contract (returned the wrong number of results, was cancelled
    or the batcher shut down)."""
