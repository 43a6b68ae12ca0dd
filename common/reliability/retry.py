"""Retries with exponential backoff, full jitter, a deadline and a budget.

* Only retryable errors are retried (never :class:`CircuitOpen`, never validation or caller
  errors); the last real exception is always re-raised, and zero attempts is an error.
* The overall deadline also caps each attempt's timeout.
* A Retry-After hint on the error (``retry_after_s``, or a ``Retry-After`` /
  ``retry-after-ms`` header on ``error.headers``) is honoured up to ``max_retry_after_s``.
* A wait longer than ``max_hold_s`` raises :class:`~common.errors.RetryLater` so the consumer
  redelivers the message later instead of holding it.
* :func:`set_instant_waits` (or the :func:`instant_waits` context manager) is the test switch:
  every policy still computes and reports its waits but does not sleep them.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.errors import Reject, RetryLater
from common.reliability.budget import RetryBudget
from common.reliability.clock import Clock, system_clock
from common.reliability.errors import BulkheadFull, CircuitOpen, RetryError

__all__ = [
    "RETRYABLE_STATUS",
    "GiveUpHook",
    "RetryHook",
    "RetryPolicy",
    "default_is_retryable",
    "instant_waits",
    "parse_retry_after",
    "retry_after_hint",
    "set_instant_waits",
]

P = ParamSpec("P")
T = TypeVar("T")
RetryHook = Callable[[int, BaseException, float], None]  # attempt, error, wait
GiveUpHook = Callable[[int, BaseException, str], None]  # attempts, error, reason

# HTTP statuses that say "try again": timeout, too early, too many requests, 5xx but 501.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

_instant = False


def set_instant_waits(enabled: bool) -> None:
    """Test switch: with ``True`` every retry wait is skipped (hooks still see its length)."""
    global _instant  # noqa: PLW0603 - one process-wide test switch, like stamina's set_testing
    _instant = enabled


def waits_are_instant() -> bool:
    """True while the test switch is on."""
    return _instant


@contextmanager
def instant_waits() -> Iterator[None]:
    """``with instant_waits(): ...`` -- the test switch, restored on exit."""
    before = _instant
    set_instant_waits(True)
    try:
        yield
    finally:
        set_instant_waits(before)


def default_is_retryable(error: BaseException) -> bool:
    """Transient failures: timeouts, connection errors (a Redis failover's ``ConnectionError``,
    ``MasterNotFoundError`` and ``READONLY`` too), retryable HTTP statuses, and errors that say
    they are (``error.retryable``)."""
    if isinstance(error, CircuitOpen | BulkheadFull | Reject | RetryLater | ValueError):
        return False
    flagged = getattr(error, "retryable", None)
    if flagged is not None:
        return bool(flagged)
    status = getattr(error, "status", None)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status in RETRYABLE_STATUS
    return isinstance(
        error,
        TimeoutError | OSError | RedisConnectionError | RedisTimeoutError | ReadOnlyError,
    )


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


def retry_after_hint(error: BaseException) -> float | None:
    """The wait a failed call asked for: ``error.retry_after_s`` or its Retry-After headers."""
    hinted = getattr(error, "retry_after_s", None)
    if isinstance(hinted, int | float) and not isinstance(hinted, bool):
        return float(hinted) if hinted > 0 else None
    headers = getattr(error, "headers", None)
    if isinstance(headers, Mapping):
        lowered = {str(k).lower(): v for k, v in headers.items()}
        ms, value = lowered.get("retry-after-ms"), lowered.get("retry-after")
        seconds = parse_retry_after(
            str(value) if value is not None else None,
            milliseconds=str(ms) if ms is not None else None,
        )
        return seconds if seconds else None
    return None


@dataclass
class RetryPolicy:
    """How to retry one dependency.

    ``on_retry(attempt, error, wait)`` runs before each wait; ``on_giveup(attempts, error,
    reason)`` when a retryable failure is raised after all (reason: ``attempts``, ``deadline``,
    ``budget``, or ``refused`` when a retry met an open breaker or a full bulkhead, in which case
    the earlier real error is raised with a note); ``on_budget_exhausted(error)`` when the
    budget refused a retry.
    """

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
    on_giveup: GiveUpHook | None = None

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**(attempt-1))]."""
        ceiling = min(self.max_delay_s, self.base_s * (2 ** min(attempt - 1, 64)))
        rng = self.rng or random
        return rng.uniform(0, ceiling)

    async def run(self, fn: Callable[[float | None], Awaitable[T]]) -> T:
        """Call ``fn(attempt_timeout_s)`` until it succeeds or retrying is pointless.

        ``attempt_timeout_s`` is the time left before the deadline (None without one); ``fn``
        should bound its attempt by it. Raises the last real error, never returns in its place.
        """
        if self.max_attempts < 1:
            raise RetryError("a retry policy needs at least one attempt")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise RetryError("a retry deadline must be positive")
        clock = self.clock
        started = clock.monotonic()
        if self.budget is not None:
            self.budget.deposit()
        attempt = 0
        last: BaseException | None = None
        while True:
            attempt += 1
            remaining = None
            if self.deadline_s is not None:
                remaining = self.deadline_s - (clock.monotonic() - started)
                if remaining <= 0 and last is not None:
                    # The wait overslept the deadline (a busy event loop): the error stands.
                    self._gave_up(attempt - 1, last, "deadline")
                    raise last
            try:
                return await fn(remaining)
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                if last is not None and isinstance(error, CircuitOpen | BulkheadFull):
                    raise self._refused(attempt, last, error) from last.__cause__
                delay = self._next_delay(attempt, error, started)
                if delay is None:
                    raise
                if self.on_retry is not None:
                    self.on_retry(attempt, error, delay)
                last = error
            await self._wait(delay)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` under this policy (the attempt timeout is not passed on)."""
        return await self.run(lambda _remaining: fn(*args, **kwargs))

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorator form: ``@policy`` over an ``async def``."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.run(lambda _remaining: fn(*args, **kwargs))

        return wrapper

    def _next_delay(self, attempt: int, error: BaseException, started: float) -> float | None:
        """The wait before the next attempt, or None when the error should be raised now."""
        if not self.is_retryable(error):
            return None
        if attempt >= self.max_attempts:
            self._gave_up(attempt, error, "attempts")
            return None
        delay = self._delay(attempt, error)
        # Holding the message that long is the consumer's call, not this deadline's: hand it
        # back for a delayed redelivery (a fresh deadline then).
        if self.max_hold_s is not None and delay > self.max_hold_s:
            raise RetryLater(f"retry in {delay:.1f}s: {error!r}", delay=delay) from error
        if self.deadline_s is not None:
            left = self.deadline_s - (self.clock.monotonic() - started)
            if delay >= left:
                self._gave_up(attempt, error, "deadline")
                return None
        if self.budget is not None and not self.budget.try_withdraw():
            if self.on_budget_exhausted is not None:
                self.on_budget_exhausted(error)
            self._gave_up(attempt, error, "budget")
            return None
        return delay

    def _delay(self, attempt: int, error: BaseException) -> float:
        hinted = retry_after_hint(error)
        if hinted is not None:
            return min(hinted, self.max_retry_after_s)
        return self.backoff(attempt)

    async def _wait(self, delay: float) -> None:
        if _instant:
            await asyncio.sleep(0)  # the test switch: still a scheduling point, no real wait
        else:
            await self.clock.sleep(delay)

    def _refused(self, attempt: int, last: BaseException, refusal: BaseException) -> BaseException:
        """Our own protection refused a retry: the dependency's last error is the news."""
        last.add_note(f"retry refused: {refusal}")
        self._gave_up(attempt - 1, last, "refused")
        return last

    def _gave_up(self, attempts: int, error: BaseException, reason: str) -> None:
        if self.on_giveup is not None:
            self.on_giveup(attempts, error, reason)
