"""The circuit breaker's vocabulary: its states, its configuration and a snapshot of its
counts (:mod:`common.reliability.breaker` is the breaker itself)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ReadOnlyError, ResponseError

from common.errors import Reject, RetryLater
from common.reliability.errors import BulkheadFull, CircuitOpen

__all__ = ["STATE_CODES", "BreakerConfig", "BreakerStats", "State", "default_is_failure"]


class State(enum.Enum):
    """Breaker states."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


STATE_CODES = {
    State.CLOSED: 0,
    State.HALF_OPEN: 1,
    State.OPEN: 2,
    State.FORCED_OPEN: 3,
    State.DISABLED: 4,
}

def default_is_failure(error: BaseException) -> bool:
    """Errors that say something about the dependency's health count (a replica answering
    ``READONLY`` after a failover does); the caller's do not."""
    if isinstance(error, ReadOnlyError):
        return True
    return not isinstance(
        error, CircuitOpen | BulkheadFull | Reject | RetryLater | ValueError | ResponseError
    )


@dataclass(frozen=True)
class BreakerConfig:
    """How a breaker judges its dependency."""

    window: str = "count"  # "count": last window_size calls; "time": last window_size seconds
    window_size: int = 20
    minimum_calls: int = 10
    failure_rate: float = 0.5
    slow_call_rate: float = 1.0
    slow_call_s: float = 60.0
    half_open_permits: int = 1
    open_s: float = 30.0
    open_multiplier: float = 2.0
    max_open_s: float = 300.0
    jitter: float = 0.1
    max_retry_after_s: float = 600.0
    is_failure: Callable[[BaseException], bool] = default_is_failure
    is_failure_result: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.window not in {"count", "time"}:
            raise ValueError("window must be 'count' or 'time'")
        if self.window_size < 1 or self.minimum_calls < 1 or self.half_open_permits < 1:
            raise ValueError("window_size, minimum_calls and half_open_permits must be >= 1")
        if not (0 < self.failure_rate <= 1 and 0 < self.slow_call_rate <= 1):
            raise ValueError("rates must be in (0, 1]")
        if self.open_s <= 0 or self.max_open_s < self.open_s or self.open_multiplier < 1:
            raise ValueError("need open_s > 0, max_open_s >= open_s and open_multiplier >= 1")
        if not 0 <= self.jitter < 1 or self.slow_call_s <= 0:
            raise ValueError("need 0 <= jitter < 1 and slow_call_s > 0")

    @property
    def effective_minimum_calls(self) -> int:
        """``minimum_calls``, capped by a count window's size (which it could never exceed)."""
        if self.window == "count":
            return min(self.minimum_calls, self.window_size)
        return self.minimum_calls


@dataclass(frozen=True)
class BreakerStats:
    """A snapshot of one breaker, for admin routes, heartbeats and tests."""

    name: str
    state: State
    calls: int  # outcomes in the closed-state window now
    failures: int
    slow: int
    remaining_open_s: float
    reopens: int

    @property
    def failure_rate(self) -> float:
        """Failures / calls in the window (0 when empty)."""
        return self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow calls / calls in the window (0 when empty)."""
        return self.slow / self.calls if self.calls else 0.0
