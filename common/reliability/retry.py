"""Retries with exponential backoff, full jitter, a deadline and a budget.

* Only retryable errors are retried (never :class:`CircuitOpen`, never validation or caller
  errors); the last real exception is always re-raised, and zero attempts is an error.
* The overall deadline also caps each attempt's timeout.
* A Retry-After hint on the error (``retry_after_s``) is honoured up to ``max_retry_after_s``.
* A wait longer than ``max_hold_s`` raises :class:`~common.errors.RetryLater` so the consumer
  redelivers the message later instead of holding it.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import Reject, RetryLater
from common.reliability.budget import RetryBudget
from common.reliability.clock import Clock, system_clock
from common.reliability.errors import BulkheadFull, CircuitOpen, RetryError

__all__ = ["RetryHook", "RetryPolicy", "default_is_retryable", "parse_retry_after"]

T = TypeVar("T")
RetryHook = Callable[[int, BaseException, float], None]


def default_is_retryable(error: BaseException) -> bool:
    """Transient failures: timeouts, connection errors, and errors that say they are."""
    if isinstance(error, CircuitOpen | BulkheadFull | Reject | RetryLater | ValueError):
        return False
    flagged = getattr(error, "retryable", None)
    if flagged is not None:
        return bool(flagged)
    return isinstance(error, TimeoutError | OSError | RedisConnectionError | RedisTimeoutError)


def parse_retry_after(
    value: str | None, *, milliseconds: str | None = None, now: datetime | None = None
) -> float | None:
    """Seconds from a ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` value."""
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class RetryPolicy:
    """How to retry one dependency."""

    max_attempts: int = 3
    base_s: float = 0.05
    max_delay_s: float = 5.0
    deadline_s: float | None = None
    max_retry_after_s: float = 30.0
    max_hold_s: float | None = None
    budget: RetryBudget | None = None
    is_retryable: Callable[[BaseException], bool] = default_is_retryable
    clock: Clock = system_clock
    rng: random.Random | None = None
    on_retry: RetryHook | None = None
    on_budget_exhausted: Callable[[BaseException], None] | None = None

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**(attempt-1))]."""
        ceiling = min(self.max_delay_s, self.base_s * (2 ** (attempt - 1)))
        rng = self.rng or random
        return rng.uniform(0, ceiling)

    async def run(self, fn: Callable[[float | None], Awaitable[T]]) -> T:
        """Call ``fn(attempt_timeout_s)`` until it succeeds or retrying is pointless.

        ``attempt_timeout_s`` is the time left before the deadline (None without one); ``fn``
        should bound its attempt by it.
        """
        if self.max_attempts < 1:
            raise RetryError("a retry policy needs at least one attempt")
        clock = self.clock
        started = clock.monotonic()
        if self.budget is not None:
            self.budget.deposit()
        attempt = 0
        while True:
            attempt += 1
            remaining = None
            if self.deadline_s is not None:
                remaining = self.deadline_s - (clock.monotonic() - started)
                if remaining <= 0:
                    raise TimeoutError(f"retry deadline of {self.deadline_s}s passed")
            try:
                return await fn(remaining)
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                delay = self._next_delay(attempt, error, started)
                if delay is None:
                    raise
                if self.on_retry is not None:
                    self.on_retry(attempt, error, delay)
                await clock.sleep(delay)

    def _next_delay(self, attempt: int, error: BaseException, started: float) -> float | None:
        """The wait before the next attempt, or None when the error should be raised now."""
        if attempt >= self.max_attempts or not self.is_retryable(error):
            return None
        delay = self._delay(attempt, error)
        if self.deadline_s is not None:
            left = self.deadline_s - (self.clock.monotonic() - started)
            if delay >= left:
                return None
        if self.max_hold_s is not None and delay > self.max_hold_s:
            raise RetryLater(f"retry in {delay:.1f}s: {error!r}", delay=delay) from error
        if self.budget is not None and not self.budget.try_withdraw():
            if self.on_budget_exhausted is not None:
                self.on_budget_exhausted(error)
            return None
        return delay

    def _delay(self, attempt: int, error: BaseException) -> float:
        hinted = getattr(error, "retry_after_s", None)
        if isinstance(hinted, int | float) and hinted > 0:
            return float(min(hinted, self.max_retry_after_s))
        return self.backoff(attempt)
