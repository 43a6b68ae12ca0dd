"""Retries: backoff, deadline, budget, Retry-After, and always the last real error."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import EventGuardError, RetryLater
from common.reliability.budget import RetryBudget
from common.reliability.clock import ManualClock
from common.reliability.errors import CircuitOpen, RetryError
from common.reliability.retry import (
    RetryPolicy,
    default_is_retryable,
    instant_waits,
    parse_retry_after,
    retry_after_hint,
    set_instant_waits,
    waits_are_instant,
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


class Transient(OSError):
    """A transient failure."""


class HttpError(Exception):
    """An HTTP error with a status and headers, like aiohttp's ClientResponseError."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers or {}


async def test_instant_waits_switch_skips_real_sleeps_but_reports_them() -> None:
    """With the test switch on, long backoffs cost no real time; hooks still see the waits."""
    waits: list[float] = []
    attempts = 0

    async def call() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise Transient("down")
        return "ok"

    policy = RetryPolicy(
        max_attempts=4, base_s=10.0, max_delay_s=10.0, on_retry=lambda _a, _e, d: waits.append(d)
    )
    started = time.perf_counter()
    with instant_waits():
        assert waits_are_instant()
        assert await policy.call(call) == "ok"
    assert not waits_are_instant()
    assert time.perf_counter() - started < 0.5
    assert len(waits) == 3
    set_instant_waits(False)


async def test_give_up_hook_names_the_reason() -> None:
    """on_giveup says why a retryable error was raised: attempts, deadline or budget."""
    reasons: list[str] = []

    async def down(_remaining: float | None) -> str:
        raise Transient("down")

    clock = ManualClock()
    by_attempts = RetryPolicy(
        max_attempts=2, clock=clock, on_giveup=lambda *a: reasons.append(a[2])
    )
    with pytest.raises(Transient):
        await by_attempts.run(down)

    class Hinted(OSError):
        retry_after_s = 50.0

    async def hinted(_remaining: float | None) -> str:
        raise Hinted

    by_deadline = RetryPolicy(
        max_attempts=5,
        deadline_s=10,
        max_retry_after_s=100,
        clock=clock,
        on_giveup=lambda *a: reasons.append(a[2]),
    )
    with pytest.raises(Hinted):
        await by_deadline.run(hinted)
    empty = RetryBudget(ratio=0.0, min_per_s=0.0, clock=clock)
    by_budget = RetryPolicy(
        max_attempts=5, budget=empty, clock=clock, on_giveup=lambda *a: reasons.append(a[2])
    )
    with pytest.raises(Transient):
        await by_budget.run(down)
    assert reasons == ["attempts", "deadline", "budget"]


async def test_a_wait_that_oversleeps_the_deadline_raises_the_last_real_error() -> None:
    """If the event loop oversleeps past the deadline, the real error is raised, not a new one."""

    class LateClock(ManualClock):
        async def sleep(self, seconds: float) -> None:
            await super().sleep(seconds + 100)  # a busy loop wakes us far too late

    async def down(_remaining: float | None) -> str:
        raise Transient("the real one")

    policy = RetryPolicy(max_attempts=5, base_s=0.001, deadline_s=10, clock=LateClock())
    with pytest.raises(Transient, match="the real one"):
        await policy.run(down)


def test_http_statuses_and_flags_decide_retryability() -> None:
    """429/5xx retry, 4xx do not, an explicit retryable flag wins, validation never retries."""
    assert default_is_retryable(HttpError(503))
    assert default_is_retryable(HttpError(429))
    assert not default_is_retryable(HttpError(404))
    assert not default_is_retryable(HttpError(501))
    flagged = HttpError(404)
    flagged.retryable = True  # type: ignore[attr-defined]
    assert default_is_retryable(flagged)
    assert not default_is_retryable(ValueError("bad input"))
    assert default_is_retryable(TimeoutError())
    assert not default_is_retryable(EventGuardError("ours"))


def test_retry_after_hint_reads_attributes_and_headers() -> None:
    """Retry-After comes from retry_after_s, or Retry-After / retry-after-ms headers."""
    assert retry_after_hint(HttpError(429, {"Retry-After": "12"})) == 12.0
    assert retry_after_hint(HttpError(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_hint(HttpError(429, {"Retry-After": "garbage"})) is None
    assert retry_after_hint(HttpError(500)) is None
    assert retry_after_hint(ValueError()) is None


async def test_header_hint_replaces_backoff() -> None:
    """A 429 with Retry-After waits what the server asked (capped), then succeeds."""
    clock = ManualClock()
    errors = [HttpError(429, {"Retry-After": "4"})]

    async def call() -> str:
        if errors:
            raise errors.pop()
        return "ok"

    assert await RetryPolicy(max_attempts=2, clock=clock).call(call) == "ok"
    assert clock.slept == [4.0]


async def test_decorator_form_and_none_results() -> None:
    """@policy retries an async def; a real None result is returned as the call's result."""
    clock = ManualClock()
    attempts = 0

    @RetryPolicy(max_attempts=3, clock=clock)
    async def fetch(key: str) -> str | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Transient(key)
        return None

    assert await fetch("k") is None
    assert attempts == 2
    assert fetch.__name__ == "fetch"


async def test_cancellation_is_never_retried() -> None:
    """A cancelled attempt propagates at once."""
    attempts = 0

    async def call(_remaining: float | None) -> str:
        nonlocal attempts
        attempts += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await RetryPolicy(max_attempts=5, clock=ManualClock()).run(call)
    assert attempts == 1


def test_budget_reserve_refills_with_time() -> None:
    """With no deposits, the per-second reserve still allows a trickle of retries."""
    clock = ManualClock()
    budget = RetryBudget(ratio=0.0, min_per_s=2.0, clock=clock)
    assert budget.try_withdraw()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    clock.advance(0.5)
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    with pytest.raises(ValueError, match="ratio"):
        RetryBudget(ratio=1.5)


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.sampled_from(["ok", "transient", "fatal"]), min_size=1, max_size=8),
    max_attempts=st.integers(1, 6),
)
def test_result_is_a_success_or_the_last_real_error_never_none(
    outcomes: list[str], max_attempts: int
) -> None:
    """For any sequence of outcomes the policy returns the first success or raises exactly
    the last error the call raised (never None, never a substitute)."""

    async def scenario() -> None:
        raised: list[BaseException] = []
        index = 0

        async def call(_remaining: float | None) -> str:
            nonlocal index
            kind = outcomes[min(index, len(outcomes) - 1)]
            index += 1
            if kind == "ok":
                return "value"
            error: BaseException = Transient(index) if kind == "transient" else KeyError(index)
            raised.append(error)
            raise error

        policy = RetryPolicy(max_attempts=max_attempts, clock=ManualClock())
        outcome: object
        try:
            outcome = await policy.run(call)
        except (Transient, KeyError) as error:
            outcome = error
        assert index <= max_attempts
        if isinstance(outcome, BaseException):
            assert outcome is raised[-1]
        else:
            assert outcome == "value"

    asyncio.run(scenario())
