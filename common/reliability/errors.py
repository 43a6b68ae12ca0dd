"""Errors of the reliability toolkit (all under common.errors.ExternalCallError)."""

from __future__ import annotations

from common.errors import ExternalCallError

__all__ = ["BatchError", "BulkheadFull", "CircuitOpen", "RetryBudgetExhausted", "RetryError"]


class CircuitOpen(ExternalCallError):
    """The breaker refused the call; ``remaining_s`` until it may let a probe through."""

    def __init__(self, name: str, remaining_s: float, state: str = "open") -> None:
        super().__init__(f"circuit {name!r} is {state}; retry in {remaining_s:.3f}s")
        self.name = name
        self.remaining_s = remaining_s
        self.state = state


class BulkheadFull(ExternalCallError):
    """Too many calls in flight and too many waiting."""

    def __init__(self, name: str) -> None:
        super().__init__(f"bulkhead {name!r} is full")
        self.name = name


class RetryBudgetExhausted(ExternalCallError):
    """Raised only when there is no real error to re-raise (never hides one)."""


class RetryError(ExternalCallError):
    """A retry policy was asked to make zero attempts."""


class BatchError(ExternalCallError):
    """A batch processor broke its contract (e.g. returned the wrong number of results)."""
