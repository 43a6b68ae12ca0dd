"""A retry budget: retries may be at most a fraction of requests (Finagle / gRPC throttling).

Every first attempt deposits ``ratio`` tokens; every retry withdraws one. A small floor of
``min_per_s`` retries per second keeps low-traffic dependencies retryable. When a dependency
fails widely, the budget runs dry and retries stop instead of multiplying the load.
"""

from __future__ import annotations

from common.reliability.clock import Clock, system_clock

__all__ = ["RetryBudget"]


class RetryBudget:
    """Token bucket shared by every caller of one dependency."""

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_s: float = 1.0,
        max_tokens: float = 100.0,
        clock: Clock = system_clock,
    ) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError("ratio must be in [0, 1]")
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.max_tokens = max_tokens
        self._clock = clock
        self._tokens = max_tokens * ratio
        self._reserve = min_per_s
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._last
        if elapsed > 0:
            self._reserve = min(self.min_per_s, self._reserve + elapsed * self.min_per_s)
            self._last = now

    def deposit(self) -> None:
        """A first attempt was made."""
        self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; False when it is spent."""
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self._refill()
        if self._reserve >= 1:
            self._reserve -= 1
            return True
        return False

    @property
    def available(self) -> float:
        """Retries available now (for tests and metrics)."""
        self._refill()
        return self._tokens + self._reserve
