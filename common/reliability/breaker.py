"""A circuit breaker that counts rates, not streaks.

States: closed -> open -> half-open -> closed (or back to open), plus forced-open and disabled
set by hand. In the closed state outcomes go into a sliding window (the last N calls, or the
last N seconds in one-second buckets); once ``minimum_calls`` are in it, a failure rate or a
slow-call rate at or above its threshold opens the breaker. Open lasts ``open_s``, growing by
``open_multiplier`` on each re-open (capped, with jitter) and reset after a successful close;
a Retry-After hint from the failure that tripped it can lengthen it. Half-open lets exactly
``half_open_permits`` probes through, whatever the concurrency: the permit is taken
synchronously before the call is awaited, and the event loop runs one task at a time, so no
lock is needed and none is ever held across the awaited call. The rest fail fast with
:class:`CircuitOpen`, which carries the time left.

Three ways to call through it: ``await breaker.call(fn, *args)``, the decorator ``@breaker``,
and ``async with breaker.protect():`` for code that is not one coroutine call.

A breaker belongs to one event loop. Outcome counts are plain integers read at scrape time,
so the closed-state fast path does no metric work. Listeners run synchronously on every state
change (the worker pauses its consumer from one); a listener that raises is logged and skipped,
never allowed to break the call that caused the transition.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import ParamSpec, TypeVar

import structlog

from common.reliability._windows import CountWindow, TimeWindow
from common.reliability.breaker_types import BreakerConfig, BreakerStats, State
from common.reliability.clock import Clock, system_clock
from common.reliability.errors import CircuitOpen

__all__ = ["CircuitBreaker", "Listener"]

_log = structlog.get_logger("eventguard.reliability")

P = ParamSpec("P")
T = TypeVar("T")


Listener = Callable[["CircuitBreaker", State, State], None]


@dataclass
class _Counts:
    success: int = 0
    failure: int = 0
    slow: int = 0
    not_permitted: int = 0
    ignored: int = 0
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)


class CircuitBreaker:
    """One breaker for one dependency."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = system_clock,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.config = config or BreakerConfig()
        self._clock = clock
        self._now = clock.monotonic
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        cfg = self.config
        self._window: CountWindow | TimeWindow = (
            CountWindow(cfg.window_size) if cfg.window == "count" else TimeWindow(cfg.window_size)
        )
        self._state = State.CLOSED
        self._open_until = 0.0
        self._reopens = 0
        self._permits_left = 0
        self._probes_ok = 0
        self._listeners: list[Listener] = []
        self.counts = _Counts()
        # Shared state leases half-open probes fleet-wide through this (see shared.py).
        self.probe_gate: Callable[[], Awaitable[bool]] | None = None
        # Hot-path copies of the configuration.
        self._slow_s = cfg.slow_call_s
        self._min_calls = cfg.effective_minimum_calls
        self._is_failure = cfg.is_failure
        self._is_failure_result = cfg.is_failure_result

    # -- inspection -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (an expired open period reads as half-open)."""
        if self._state is State.OPEN and self._now() >= self._open_until:
            self._transition(State.HALF_OPEN)
        return self._state

    def remaining_open_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self._state is State.OPEN:
            return max(0.0, self._open_until - self._now())
        return float("inf") if self._state is State.FORCED_OPEN else 0.0

    def stats(self) -> BreakerStats:
        """The state and the closed-state window's counts now."""
        state = self.state
        calls, failures, slow = self._window.totals(self._now())
        return BreakerStats(
            self.name, state, calls, failures, slow, self.remaining_open_s(), self._reopens
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(breaker, old, new)`` synchronously on every state change.

        An OPEN -> HALF_OPEN change happens when the open period has ended *and* something
        reads :attr:`state` or makes a call; code that stops calling while the breaker is open
        (a paused consumer) should read :attr:`state` after :meth:`remaining_open_s`.
        """
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (no error if it was not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- manual control ---------------------------------------------------------------------

    def force_open(self) -> None:
        """Refuse every call until :meth:`reset`."""
        self._transition(State.FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through and record nothing until :meth:`reset`."""
        self._transition(State.DISABLED)

    def reset(self) -> None:
        """Back to closed with an empty window and the base open duration."""
        self._window.clear()
        self._reopens = 0
        self._transition(State.CLOSED)

    def trip(self, *, retry_after_s: float | None = None) -> None:
        """Open now (used by shared state when the fleet's window trips)."""
        if self._state in {State.CLOSED, State.HALF_OPEN}:
            self._open(retry_after_s)

    # -- the call ---------------------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` through the breaker."""
        if self._state is State.CLOSED:
            now = self._now
            start = now()
            try:
                result = await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                self._record_error(error, start, probe=False)
                raise
            # Fast path: a quick success into a window with nothing bad in it changes nothing
            # but the success count.
            if (
                self._window.clean
                and now() - start < self._slow_s
                and self._is_failure_result is None
            ):
                self.counts.success += 1
                return result
            self._record_result(result, start, probe=False)
            return result
        probe = await self._permit()
        if probe is None:  # disabled
            return await fn(*args, **kwargs)
        start = self._now()
        try:
            result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            self._release_probe(probe)
            raise
        except BaseException as error:
            self._record_error(error, start, probe=probe)
            raise
        self._record_result(result, start, probe=probe)
        return result

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorator form: ``@breaker`` over an ``async def``."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        return wrapper

    def protect(self) -> _Protected:
        """Context-manager form: ``async with breaker.protect() as attempt: ...``.

        Raises :class:`CircuitOpen` on entry when refused; an exception leaving the block is
        judged like one from :meth:`call`; ``attempt.mark_failure()`` records a bad result."""
        return _Protected(self)

    async def _permit(self) -> bool | None:
        """:meth:`_acquire`, then the fleet-wide lease for a half-open probe (shared state)."""
        probe = self._acquire()
        if probe and self.probe_gate is not None and not await self.probe_gate():
            self._release_probe(probe)
            self.counts.not_permitted += 1
            raise CircuitOpen(self.name, 0.0, "half_open")
        return probe

    def _acquire(self) -> bool | None:
        """Permission for one call outside the closed fast path: True for a half-open probe,
        False for a plain closed call, None when disabled; raises CircuitOpen."""
        state = self.state
        if state is State.CLOSED:
            return False
        if state is State.DISABLED:
            return None
        if state is State.HALF_OPEN and self._permits_left > 0:
            self._permits_left -= 1
            return True
        self.counts.not_permitted += 1
        remaining = self.remaining_open_s() if state is not State.HALF_OPEN else 0.0
        raise CircuitOpen(self.name, remaining, state.value)

    def _release_probe(self, probe: bool) -> None:
        if probe and self._state is State.HALF_OPEN:
            self._permits_left += 1

    def _record_result(self, result: object, start: float, *, probe: bool) -> None:
        check = self._is_failure_result
        if check is not None and check(result):
            self._record(True, start, probe, None)
        else:
            self._record(False, start, probe, None)

    def _record_error(self, error: BaseException, start: float, *, probe: bool) -> None:
        if not self._is_failure(error):
            self.counts.ignored += 1
            self._release_probe(probe)
            return
        self._record(True, start, probe, getattr(error, "retry_after_s", None))

    def _record(self, failed: bool, start: float, probe: bool, retry_after: float | None) -> None:
        now = self._now()
        slow = now - start >= self._slow_s
        counts = self.counts
        if failed:
            counts.failure += 1
        elif slow:
            counts.slow += 1
        else:
            counts.success += 1
        state = self._state
        if state is State.DISABLED or state is State.FORCED_OPEN:
            return
        if probe:
            self._after_probe(failed or slow, retry_after)
            return
        if state is not State.CLOSED:
            return  # a call let through before the breaker opened: no longer evidence
        window = self._window
        window.add(failed, slow, now)
        if not (failed or slow):
            return
        calls, failures, slow_calls = window.totals(now)
        cfg = self.config
        if calls >= self._min_calls and (
            failures >= cfg.failure_rate * calls or slow_calls >= cfg.slow_call_rate * calls
        ):
            self._open(retry_after)

    def _after_probe(self, bad: bool, retry_after: float | None) -> None:
        if self._state is not State.HALF_OPEN:
            return
        if bad:
            self._open(retry_after)
            return
        self._probes_ok += 1
        if self._probes_ok >= self.config.half_open_permits:
            self._reopens = 0
            self._window.clear()
            self._transition(State.CLOSED)

    # -- transitions ------------------------------------------------------------------------

    def _open(self, retry_after: float | None) -> None:
        cfg = self.config
        duration = min(cfg.max_open_s, cfg.open_s * cfg.open_multiplier**self._reopens)
        duration *= 1 + self._rng.uniform(-cfg.jitter, cfg.jitter)
        if retry_after is not None and retry_after > 0:
            duration = max(duration, min(float(retry_after), cfg.max_retry_after_s))
        self._reopens += 1
        self._open_until = self._now() + duration
        self._window.clear()
        self._transition(State.OPEN)

    def _transition(self, new: State) -> None:
        old = self._state
        if new is State.HALF_OPEN:
            self._permits_left = self.config.half_open_permits
            self._probes_ok = 0
        if old is new:
            return
        self._state = new
        key = (old.value, new.value)
        self.counts.transitions[key] = self.counts.transitions.get(key, 0) + 1
        for listener in list(self._listeners):
            try:
                listener(self, old, new)
            except Exception as error:  # noqa: BLE001 - a broken listener must not break calls
                _log.exception("breaker.listener_failed", dependency=self.name, error=repr(error))


class _Protected:
    """One call through a breaker as an async context manager (see CircuitBreaker.protect)."""

    __slots__ = ("_bad", "_breaker", "_probe", "_start")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._probe: bool | None = False
        self._start = 0.0
        self._bad = False

    def mark_failure(self) -> None:
        """Count this call as a failure even if the block ends without an exception."""
        self._bad = True

    async def __aenter__(self) -> _Protected:
        breaker = self._breaker
        self._probe = False if breaker._state is State.CLOSED else await breaker._permit()
        self._start = breaker._now()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        probe = self._probe
        if probe is None:  # disabled
            return
        breaker = self._breaker
        if exc is None:
            breaker._record(self._bad, self._start, probe, None)
        elif isinstance(exc, asyncio.CancelledError):
            breaker._release_probe(probe)
        else:
            breaker._record_error(exc, self._start, probe=probe)
