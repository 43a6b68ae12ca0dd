"""The breaker's other faces: decorator, protect(), listeners, stats, configuration checks."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from common.errors import ExternalCallError
from common.reliability.breaker import CircuitBreaker
from common.reliability.breaker_types import BreakerConfig, State
from common.reliability.clock import ManualClock
from common.reliability.errors import CircuitOpen


class Boom(Exception):
    """A dependency failure."""


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
    """Read through a call so mypy does not narrow the state across awaits."""
    return breaker.state


async def _fail(breaker: CircuitBreaker, times: int) -> None:
    async def boom() -> None:
        raise Boom

    for _ in range(times):
        with contextlib.suppress(Boom, CircuitOpen):
            await breaker.call(boom)


async def test_decorator_form_counts_like_call() -> None:
    """@breaker wraps an async def, keeps its name and counts its outcomes."""
    breaker = _breaker(ManualClock())

    @breaker
    async def add(a: int, b: int = 0) -> int:
        if a < 0:
            raise Boom
        return a + b

    assert add.__name__ == "add"
    assert await add(1, b=2) == 3
    for _ in range(3):  # 3 failures in 4 calls: the rate reaches 0.5 with minimum_calls met
        with pytest.raises(Boom):
            await add(-1)
    assert _state(breaker) is State.OPEN
    with pytest.raises(CircuitOpen):
        await add(1)


async def test_protect_context_records_errors_and_marked_results() -> None:
    """protect() judges an escaping error and mark_failure() like failed calls."""
    breaker = _breaker(ManualClock())
    async with breaker.protect():
        pass
    assert breaker.counts.success == 1
    for _ in range(2):
        with pytest.raises(Boom):
            async with breaker.protect():
                raise Boom
    async with breaker.protect() as attempt:
        attempt.mark_failure()
    assert breaker.counts.failure == 3
    assert _state(breaker) is State.OPEN
    with pytest.raises(CircuitOpen):
        async with breaker.protect():
            pytest.fail("an open breaker must not run the block")


async def test_protect_probe_closes_and_cancellation_returns_permit() -> None:
    """In half-open, protect() takes the probe permit; a cancelled block gives it back."""
    clock = ManualClock()
    breaker = _breaker(clock)
    await _fail(breaker, 4)
    clock.advance(10)
    with pytest.raises(asyncio.CancelledError):
        async with breaker.protect():
            raise asyncio.CancelledError
    async with breaker.protect():
        pass
    assert _state(breaker) is State.CLOSED


async def test_disabled_breaker_runs_protect_blocks_without_recording() -> None:
    """A disabled breaker lets protect() blocks through and records nothing."""
    breaker = _breaker(ManualClock())
    breaker.disable()
    with pytest.raises(Boom):
        async with breaker.protect():
            raise Boom
    assert breaker.counts.failure == 0


async def test_a_failing_listener_is_logged_and_skipped() -> None:
    """A listener that raises does not break the call or the other listeners."""
    breaker = _breaker(ManualClock())
    seen: list[State] = []

    def broken(_b: CircuitBreaker, _old: State, _new: State) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    breaker.add_listener(lambda _b, _o, new: seen.append(new))
    with capture_logs() as logs:
        await _fail(breaker, 4)
    assert seen == [State.OPEN]
    assert any(e["event"] == "breaker.listener_failed" for e in logs)
    breaker.remove_listener(broken)
    breaker.remove_listener(broken)  # twice is harmless
    breaker.reset()
    assert seen == [State.OPEN, State.CLOSED]


async def test_listener_sees_half_open_when_state_is_read_after_the_open_period() -> None:
    """A paused consumer reads state once the open time is over and hears HALF_OPEN."""
    clock = ManualClock()
    breaker = _breaker(clock)
    changes: list[tuple[State, State]] = []
    breaker.add_listener(lambda _b, old, new: changes.append((old, new)))
    await _fail(breaker, 4)
    clock.advance(breaker.remaining_open_s())
    assert _state(breaker) is State.HALF_OPEN
    assert changes == [(State.CLOSED, State.OPEN), (State.OPEN, State.HALF_OPEN)]


async def test_stats_report_the_window() -> None:
    """stats() gives the window's calls, rates, state and open time."""
    clock = ManualClock()
    breaker = _breaker(clock, minimum_calls=10)

    async def ok() -> str:
        return "ok"

    await breaker.call(ok)
    await _fail(breaker, 1)
    stats = breaker.stats()
    assert (stats.calls, stats.failures, stats.state) == (2, 1, State.CLOSED)
    assert stats.failure_rate == 0.5
    assert stats.slow_call_rate == 0.0
    await _fail(breaker, 8)
    opened = breaker.stats()
    assert opened.state is State.OPEN
    assert opened.remaining_open_s == pytest.approx(10.0)
    assert opened.reopens == 1


async def test_minimum_calls_above_the_count_window_is_capped() -> None:
    """A count window smaller than minimum_calls can still open (the minimum is capped)."""
    breaker = _breaker(ManualClock(), window_size=5, minimum_calls=50)
    await _fail(breaker, 5)
    assert _state(breaker) is State.OPEN


def test_config_rejects_nonsense() -> None:
    """Bad windows, rates, open periods and jitter are refused when configured."""
    for bad in (
        {"window": "sliding"},
        {"window_size": 0},
        {"failure_rate": 0.0},
        {"slow_call_rate": 1.5},
        {"open_s": 0.0},
        {"open_s": 10.0, "max_open_s": 5.0},
        {"open_multiplier": 0.5},
        {"jitter": 1.0},
        {"slow_call_s": 0.0},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each message differs; the type is the contract
            BreakerConfig(**bad)


async def test_circuit_open_is_an_external_call_error_with_a_hint() -> None:
    """CircuitOpen derives from ExternalCallError and offers remaining_s as retry_after_s."""
    clock = ManualClock()
    breaker = _breaker(clock)
    await _fail(breaker, 4)
    clock.advance(4)

    async def ok() -> str:
        return "ok"

    with pytest.raises(CircuitOpen) as refused:
        await breaker.call(ok)
    assert isinstance(refused.value, ExternalCallError)
    assert refused.value.retry_after_s == pytest.approx(6.0)
    assert refused.value.state == "open"


async def test_forced_open_refuses_with_infinite_remaining_time() -> None:
    """force_open() refuses every call with an infinite remaining time until reset()."""
    breaker = _breaker(ManualClock())
    breaker.force_open()

    async def ok() -> str:
        return "ok"

    with pytest.raises(CircuitOpen) as refused:
        await breaker.call(ok)
    assert refused.value.remaining_s == float("inf")
    breaker.reset()
    assert await breaker.call(ok) == "ok"


@settings(max_examples=100, deadline=None)
@given(
    permits=st.integers(1, 5),
    callers=st.integers(0, 60),
    outcomes=st.lists(st.booleans(), min_size=60, max_size=60),
    seed=st.integers(0, 10_000),
)
def test_half_open_never_runs_more_probes_than_permits(
    permits: int, callers: int, outcomes: list[bool], seed: int
) -> None:
    """However many concurrent callers and whatever the probes return, at most `permits`
    probes run in one half-open period, and the breaker leaves half-open only by closing after
    `permits` good probes or re-opening on a bad one."""

    async def scenario() -> None:
        clock = ManualClock()
        breaker = CircuitBreaker(
            "p",
            BreakerConfig(window_size=4, minimum_calls=2, open_s=5, half_open_permits=permits),
            clock=clock,
            rng=random.Random(seed),  # noqa: S311 - reproducible jitter, not crypto
        )
        await _fail(breaker, 2)
        clock.advance(breaker.remaining_open_s())
        assert _state(breaker) is State.HALF_OPEN
        running = 0
        peak = 0
        ran: list[bool] = []
        gate = asyncio.Event()

        async def probe(good: bool) -> str:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            ran.append(good)
            await gate.wait()
            running -= 1
            if not good:
                raise Boom
            return "ok"

        tasks = [asyncio.create_task(breaker.call(probe, outcomes[i])) for i in range(callers)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= permits
        assert len(ran) == min(permits, callers)
        final = _state(breaker)
        if len(ran) < permits:
            assert final is (State.OPEN if not all(ran) else State.HALF_OPEN)
        elif all(ran):
            assert final is State.CLOSED
        else:
            assert final is State.OPEN

    asyncio.run(scenario())


@settings(max_examples=100, deadline=None)
@given(
    reopens=st.integers(1, 12),
    jitter=st.floats(0, 0.5),
    seed=st.integers(0, 10_000),
)
def test_open_period_grows_capped_with_jitter_and_resets_after_close(
    reopens: int, jitter: float, seed: int
) -> None:
    """Each re-open multiplies the open time (within jitter), never past the cap; a close
    brings it back to the base."""

    async def scenario() -> None:
        clock = ManualClock()
        cfg = BreakerConfig(
            window_size=2,
            minimum_calls=1,
            open_s=1.0,
            open_multiplier=2.0,
            max_open_s=30.0,
            jitter=jitter,
        )
        breaker = CircuitBreaker("p", cfg, clock=clock, rng=random.Random(seed))  # noqa: S311
        await _fail(breaker, 1)
        for n in range(reopens):
            period = breaker.remaining_open_s()
            expected = min(30.0, 2.0**n)
            assert expected * (1 - jitter) - 1e-9 <= period <= expected * (1 + jitter) + 1e-9
            clock.advance(period)
            await _fail(breaker, 1)  # the probe fails: re-open
        clock.advance(breaker.remaining_open_s())

        async def ok() -> str:
            return "ok"

        await breaker.call(ok)
        assert _state(breaker) is State.CLOSED
        await _fail(breaker, 1)
        assert breaker.remaining_open_s() <= 1.0 * (1 + jitter) + 1e-9

    asyncio.run(scenario())
