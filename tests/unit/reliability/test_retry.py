"""Retries: backoff, deadline, budget, Retry-After, and always the last real error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from common.errors import RetryLater
from common.reliability import (
    CircuitOpen,
    ManualClock,
    RetryBudget,
    RetryError,
    RetryPolicy,
    parse_retry_after,
)


class Flaky(OSError):
    """A transient failure with a sequence number."""


def _failing(times: int, result: str = "ok") -> tuple[list[float | None], object]:
    seen: list[float | None] = []

    async def call(remaining: float | None) -> str:
        seen.append(remaining)
        if len(seen) <= times:
            raise Flaky(f"failure {len(seen)}")
        return result

    return seen, call


async def test_retries_until_success_with_instant_waits() -> None:
    """Transient failures are retried; the fake clock records the backoff waits."""
    clock = ManualClock()
    seen, call = _failing(2)
    policy = RetryPolicy(max_attempts=3, base_s=0.1, clock=clock)
    assert await policy.run(call) == "ok"  # type: ignore[arg-type]
    assert len(seen) == 3
    assert len(clock.slept) == 2
    assert all(0 <= wait <= 0.2 for wait in clock.slept)


async def test_raises_the_last_real_error() -> None:
    """After the last attempt the last real exception is raised, never None."""
    _, call = _failing(5)
    policy = RetryPolicy(max_attempts=3, clock=ManualClock())
    with pytest.raises(Flaky, match="failure 3"):
        await policy.run(call)  # type: ignore[arg-type]


async def test_zero_attempts_is_a_clear_error() -> None:
    """A policy with no attempts refuses to run rather than returning None."""
    _, call = _failing(0)
    with pytest.raises(RetryError):
        await RetryPolicy(max_attempts=0).run(call)  # type: ignore[arg-type]


async def test_circuit_open_and_caller_errors_are_not_retried() -> None:
    """CircuitOpen and ValueError fail at once."""
    for error in (CircuitOpen("x", 1.0), ValueError("bad input")):
        attempts = 0

        async def call(_remaining: float | None, error: Exception = error) -> str:
            nonlocal attempts
            attempts += 1
            raise error

        with pytest.raises(type(error)):
            await RetryPolicy(max_attempts=5, clock=ManualClock()).run(call)
        assert attempts == 1


async def test_deadline_caps_attempts_and_their_timeouts() -> None:
    """Each attempt gets the time left; no retry starts past the deadline."""
    clock = ManualClock()

    async def slow(remaining: float | None) -> str:
        clock.advance(4)
        raise Flaky("slow")

    seen: list[float | None] = []

    async def tracking(remaining: float | None) -> str:
        seen.append(remaining)
        return await slow(remaining)

    policy = RetryPolicy(max_attempts=10, base_s=0.001, deadline_s=10, clock=clock)
    with pytest.raises(Flaky):
        await policy.run(tracking)
    assert seen[0] == 10
    assert all(r is not None and r > 0 for r in seen)
    assert len(seen) == 3


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A retry_after_s hint replaces the backoff, capped by max_retry_after_s."""

    class Limited(OSError):
        def __init__(self, after: float) -> None:
            super().__init__("429")
            self.retry_after_s = after

    clock = ManualClock()
    hints = [3.0, 500.0]

    async def call(_remaining: float | None) -> str:
        if hints:
            raise Limited(hints.pop(0))
        return "ok"

    policy = RetryPolicy(max_attempts=3, max_retry_after_s=30, clock=clock)
    assert await policy.run(call) == "ok"
    assert clock.slept == [3.0, 30.0]


async def test_long_wait_becomes_a_delayed_redelivery() -> None:
    """A wait longer than max_hold_s raises RetryLater so the consumer redelivers later."""

    class Limited(OSError):
        retry_after_s = 120.0

    async def call(_remaining: float | None) -> str:
        raise Limited

    policy = RetryPolicy(max_attempts=3, max_hold_s=5, max_retry_after_s=300, clock=ManualClock())
    with pytest.raises(RetryLater) as later:
        await policy.run(call)
    assert later.value.delay == 120.0


async def test_budget_stops_a_retry_storm() -> None:
    """With the budget spent, failures are raised without retrying."""
    clock = ManualClock()
    budget = RetryBudget(ratio=0.1, min_per_s=0, max_tokens=10, clock=clock)
    exhausted: list[BaseException] = []
    policy = RetryPolicy(
        max_attempts=3, budget=budget, clock=clock, on_budget_exhausted=exhausted.append
    )
    attempts = 0

    async def call(_remaining: float | None) -> str:
        nonlocal attempts
        attempts += 1
        raise Flaky("down")

    for _ in range(20):
        with pytest.raises(Flaky):
            await policy.run(call)
    # 20 first attempts; retries limited by the deposits (1 initial + 0.1 per request).
    assert attempts < 20 + 6
    assert exhausted


def test_parse_retry_after_forms() -> None:
    """Seconds, milliseconds and HTTP dates all parse; garbage does not."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None, milliseconds="1500") == 1.5
    when = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(when, now=now) == 30.0
    assert parse_retry_after("soon") is None
