"""The circuit breaker: rates not streaks, exact half-open permits, growing open periods."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.reliability.breaker import CircuitBreaker
from common.reliability.breaker_types import BreakerConfig, State
from common.reliability.clock import ManualClock
from common.reliability.errors import CircuitOpen


class Boom(Exception):
    """A dependency failure."""


async def ok() -> str:
    return "ok"


async def fail() -> str:
    raise Boom


def _breaker(clock: ManualClock, **config: object) -> CircuitBreaker:
    values: dict[str, object] = {
        "window_size": 10,
        "minimum_calls": 4,
        "failure_rate": 0.5,
        "open_s": 10.0,
        "jitter": 0.0,
        **config,
    }
    return CircuitBreaker("dep", BreakerConfig(**values), clock=clock)  # type: ignore[arg-type]


def _state(breaker: CircuitBreaker) -> State:
    """The breaker's state, read through a call so mypy does not narrow it across awaits."""
    return breaker.state


async def _run(breaker: CircuitBreaker, outcomes: list[bool]) -> None:
    for good in outcomes:
        with contextlib.suppress(Boom, CircuitOpen):
            await breaker.call(ok if good else fail)


async def test_rate_not_streak_opens_the_breaker() -> None:
    """Alternating failures open it once the failure rate reaches the threshold."""
    clock = ManualClock()
    breaker = _breaker(clock)
    await _run(breaker, [True, False, True])
    assert _state(breaker) is State.CLOSED  # below minimum_calls
    await _run(breaker, [False])
    assert _state(breaker) is State.OPEN


async def test_open_breaker_fails_fast_with_remaining_time() -> None:
    """An open breaker refuses calls with CircuitOpen carrying the remaining open time."""
    clock = ManualClock()
    breaker = _breaker(clock)
    await _run(breaker, [False] * 4)
    clock.advance(4)
    with pytest.raises(CircuitOpen) as refused:
        await breaker.call(ok)
    assert refused.value.remaining_s == pytest.approx(6.0)
    assert breaker.counts.not_permitted == 1


async def test_half_open_lets_exactly_the_permits_through_under_concurrency() -> None:
    """1,000 concurrent callers in half-open: exactly the configured probes run."""
    clock = ManualClock()
    breaker = _breaker(clock, half_open_permits=3)
    await _run(breaker, [False] * 4)
    clock.advance(10)
    release = asyncio.Event()
    ran = 0

    async def probe() -> str:
        nonlocal ran
        ran += 1
        await release.wait()
        return "ok"

    calls = [asyncio.create_task(breaker.call(probe)) for _ in range(1_000)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert ran == 3
    assert sum(r == "ok" for r in results) == 3
    assert sum(isinstance(r, CircuitOpen) for r in results) == 997
    assert _state(breaker) is State.CLOSED


async def test_failed_probe_reopens_for_longer() -> None:
    """A failed probe re-opens with the open period multiplied; a close resets it."""
    clock = ManualClock()
    breaker = _breaker(clock, open_multiplier=2.0)
    await _run(breaker, [False] * 4)
    assert breaker.remaining_open_s() == pytest.approx(10)
    clock.advance(10)
    await _run(breaker, [False])
    assert breaker.remaining_open_s() == pytest.approx(20)
    clock.advance(20)
    await _run(breaker, [True])
    assert _state(breaker) is State.CLOSED
    await _run(breaker, [False] * 4)
    assert breaker.remaining_open_s() == pytest.approx(10)


async def test_retry_after_hint_lengthens_open_time() -> None:
    """A failure carrying retry_after_s keeps the breaker open at least that long."""

    class Limited(Exception):
        retry_after_s = 42.0

    async def limited() -> str:
        raise Limited

    clock = ManualClock()
    breaker = _breaker(clock, minimum_calls=1)
    with pytest.raises(Limited):
        await breaker.call(limited)
    assert breaker.remaining_open_s() == pytest.approx(42.0)


async def test_slow_calls_open_the_breaker() -> None:
    """Calls slower than slow_call_s count toward the slow-call rate."""
    clock = ManualClock()
    breaker = _breaker(clock, slow_call_s=1.0, slow_call_rate=0.5)

    async def slow() -> str:
        clock.advance(2.0)
        return "late"

    for _ in range(4):
        await breaker.call(slow)
    assert _state(breaker) is State.OPEN
    assert breaker.counts.slow == 4


async def test_ignored_errors_and_failure_results() -> None:
    """Errors the predicate ignores do not count; results the predicate flags do."""
    clock = ManualClock()
    breaker = _breaker(
        clock,
        is_failure=lambda e: not isinstance(e, KeyError),
        is_failure_result=lambda r: r == "bad",
    )

    async def caller_bug() -> str:
        raise KeyError("x")

    for _ in range(6):
        with pytest.raises(KeyError):
            await breaker.call(caller_bug)
    assert _state(breaker) is State.CLOSED
    assert breaker.counts.ignored == 6

    async def bad() -> str:
        return "bad"

    for _ in range(4):
        await breaker.call(bad)
    assert _state(breaker) is State.OPEN


async def test_time_window_forgets_old_failures() -> None:
    """In a time-based window, failures older than the window no longer count."""
    clock = ManualClock()
    breaker = _breaker(clock, window="time", window_size=5)
    await _run(breaker, [False, False, False])
    clock.advance(6)
    await _run(breaker, [True, True, True, False])
    assert _state(breaker) is State.CLOSED


async def test_listeners_force_open_disable_reset() -> None:
    """Listeners see every transition; force-open, disable and reset act at once."""
    clock = ManualClock()
    breaker = _breaker(clock)
    seen: list[tuple[str, str]] = []
    breaker.add_listener(lambda _b, old, new: seen.append((old.value, new.value)))
    breaker.force_open()
    with pytest.raises(CircuitOpen):
        await breaker.call(ok)
    breaker.disable()
    await _run(breaker, [False] * 10)
    assert _state(breaker) is State.DISABLED
    breaker.reset()
    assert await breaker.call(ok) == "ok"
    assert seen == [("closed", "forced_open"), ("forced_open", "disabled"), ("disabled", "closed")]


async def test_cancelled_probe_returns_its_permit() -> None:
    """A probe cancelled mid-call gives its permit back."""
    clock = ManualClock()
    breaker = _breaker(clock)
    await _run(breaker, [False] * 4)
    clock.advance(10)
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    task = asyncio.create_task(breaker.call(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await breaker.call(ok) == "ok"
    assert _state(breaker) is State.CLOSED


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0, max_value=30, allow_nan=False)),
        max_size=80,
    ),
    seed=st.integers(0, 1000),
)
def test_invariants_under_random_outcomes_and_clocks(
    steps: list[tuple[bool, float]], seed: int
) -> None:
    """Whatever happens: an open breaker never runs the call, a closed one never refuses,
    and it only opens after at least minimum_calls outcomes in its window."""

    async def scenario() -> None:
        clock = ManualClock()
        breaker = CircuitBreaker(
            "p",
            BreakerConfig(window_size=8, minimum_calls=4, open_s=5, jitter=0.2),
            clock=clock,
            rng=random.Random(seed),  # noqa: S311 - reproducible jitter, not crypto
        )
        calls_since_close = 0
        for good, pause in steps:
            clock.advance(pause)
            before = breaker.state
            ran = False

            async def target(good: bool = good) -> str:
                nonlocal ran
                ran = True
                if not good:
                    raise Boom
                return "ok"

            try:
                await breaker.call(target)
            except CircuitOpen:
                assert before in {State.OPEN, State.HALF_OPEN}
            except Boom:
                pass
            if before is State.OPEN:
                assert not ran
            if before is State.CLOSED:
                assert ran
                calls_since_close += 1
                if _state(breaker) is State.OPEN:
                    assert calls_since_close >= 4
            if _state(breaker) is State.CLOSED and before is not State.CLOSED:
                calls_since_close = 0
            assert breaker.remaining_open_s() <= 5 * 1.2 * 2**10

    asyncio.run(scenario())
