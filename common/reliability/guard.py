"""``guard(name)``: the one way to make an external call.

retry( breaker( bulkhead( timeout( call )))) -- configured per dependency, with defaults per
kind, chosen by the name's first segment: ``redis``, ``http:<target>``, ``llm:<model>``,
``exchange:<venue>``. The retry layer lives only here: clients are created with their own
retries off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from common.logging import get_logger
from common.metrics import Metrics
from common.reliability.breaker import STATE_CODES, BreakerConfig, CircuitBreaker, State
from common.reliability.budget import RetryBudget
from common.reliability.bulkhead import Bulkhead
from common.reliability.clock import Clock, system_clock
from common.reliability.errors import BulkheadFull
from common.reliability.retry import RetryPolicy

__all__ = ["KIND_DEFAULTS", "Guard", "GuardConfig", "Guards"]

T = TypeVar("T")
_log = get_logger("eventguard.reliability")


@dataclass(frozen=True)
class GuardConfig:
    """Every knob of one dependency's guard."""

    timeout_s: float
    max_attempts: int
    base_backoff_s: float
    max_backoff_s: float
    deadline_s: float | None
    breaker: BreakerConfig
    max_concurrent: int
    max_waiting: int
    retry_budget_ratio: float = 0.2
    max_hold_s: float | None = None


KIND_DEFAULTS: Mapping[str, GuardConfig] = {
    # Redis: short timeouts, two attempts, a breaker that needs real evidence.
    "redis": GuardConfig(
        timeout_s=1.0,
        max_attempts=2,
        base_backoff_s=0.02,
        max_backoff_s=0.2,
        deadline_s=3.0,
        breaker=BreakerConfig(window_size=50, minimum_calls=20, open_s=2.0, max_open_s=30.0),
        max_concurrent=512,
        max_waiting=4096,
    ),
    "http": GuardConfig(
        timeout_s=5.0,
        max_attempts=3,
        base_backoff_s=0.1,
        max_backoff_s=2.0,
        deadline_s=15.0,
        breaker=BreakerConfig(window_size=20, minimum_calls=10, open_s=15.0),
        max_concurrent=64,
        max_waiting=256,
    ),
    # LLM providers: long attempts, few retries (the fallback chain is the real retry), a
    # breaker that trips on few calls and treats a minute-long answer as slow.
    "llm": GuardConfig(
        timeout_s=60.0,
        max_attempts=1,
        base_backoff_s=0.5,
        max_backoff_s=5.0,
        deadline_s=120.0,
        breaker=BreakerConfig(
            window_size=10, minimum_calls=4, open_s=30.0, slow_call_s=45.0, slow_call_rate=0.8
        ),
        max_concurrent=32,
        max_waiting=128,
    ),
    "exchange": GuardConfig(
        timeout_s=5.0,
        max_attempts=2,
        base_backoff_s=0.1,
        max_backoff_s=1.0,
        deadline_s=10.0,
        breaker=BreakerConfig(window_size=20, minimum_calls=5, open_s=15.0),
        max_concurrent=15,
        max_waiting=1000,
    ),
}


@dataclass
class Guard:
    """The composed protection of one dependency."""

    name: str
    config: GuardConfig
    breaker: CircuitBreaker
    retry: RetryPolicy
    bulkhead: Bulkhead
    _observe: Callable[[str, float], None] = field(default=lambda _o, _s: None, repr=False)

    async def call(self, fn: Callable[[], Awaitable[T]], *, timeout_s: float | None = None) -> T:
        """Run ``fn()`` under retry, breaker, bulkhead and timeout; re-raises the last error."""
        per_attempt = timeout_s or self.config.timeout_s

        async def attempt(remaining: float | None) -> T:
            limit = per_attempt if remaining is None else min(per_attempt, remaining)
            return await self.breaker.call(self._bounded, fn, limit)

        return await self.retry.run(attempt)

    async def _bounded(self, fn: Callable[[], Awaitable[T]], limit: float) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self.bulkhead, asyncio.timeout(limit):
                result = await fn()
        except TimeoutError:
            outcome = "timeout"
            raise
        except BulkheadFull:
            outcome = "rejected"
            raise
        else:
            outcome = "success"
            return result
        finally:
            self._observe(outcome, time.perf_counter() - started)


class Guards:
    """The registry of guards (and so of breakers): one per dependency name."""

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        overrides: Mapping[str, GuardConfig] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._metrics = metrics
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._guards: dict[str, Guard] = {}
        self._budgets: dict[str, RetryBudget] = {}
        if metrics is not None:
            metrics.reliability.breaker_call_sources.append(self._call_counts)

    def guard(self, name: str, *, config: GuardConfig | None = None) -> Guard:
        """The guard of ``name`` (created on first use with its kind's defaults)."""
        existing = self._guards.get(name)
        if existing is not None:
            return existing
        cfg = config or self._overrides.get(name) or self.defaults_for(name)
        breaker = CircuitBreaker(name, cfg.breaker, clock=self._clock)
        budget = self._budgets.setdefault(
            name, RetryBudget(ratio=cfg.retry_budget_ratio, clock=self._clock)
        )
        retry = RetryPolicy(
            max_attempts=cfg.max_attempts,
            base_s=cfg.base_backoff_s,
            max_delay_s=cfg.max_backoff_s,
            deadline_s=cfg.deadline_s,
            max_hold_s=cfg.max_hold_s,
            budget=budget,
            clock=self._clock,
        )
        guard = Guard(
            name,
            cfg,
            breaker,
            retry,
            Bulkhead(name, max_concurrent=cfg.max_concurrent, max_waiting=cfg.max_waiting),
        )
        self._instrument(guard)
        self._guards[name] = guard
        return guard

    def defaults_for(self, name: str) -> GuardConfig:
        """The defaults of ``name``'s kind (``http`` for unknown kinds)."""
        kind = name.split(":", 1)[0]
        return self._overrides.get(kind) or KIND_DEFAULTS.get(kind) or KIND_DEFAULTS["http"]

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Every breaker, by dependency name."""
        return {name: guard.breaker for name, guard in self._guards.items()}

    def instant(self) -> None:
        """Test switch: make every retry wait instant (the guards' clocks stop sleeping)."""
        for guard in self._guards.values():
            guard.retry.base_s = 0.0
            guard.retry.max_delay_s = 0.0

    def _call_counts(self) -> Iterable[tuple[str, str, int]]:
        for name, guard in self._guards.items():
            counts = guard.breaker.counts
            yield name, "success", counts.success
            yield name, "failure", counts.failure
            yield name, "slow", counts.slow
            yield name, "not_permitted", counts.not_permitted
            yield name, "ignored", counts.ignored

    def _instrument(self, guard: Guard) -> None:
        name = guard.name
        metrics = self._metrics

        def on_change(breaker: CircuitBreaker, old: State, new: State) -> None:
            event = {
                State.OPEN: "breaker.opened",
                State.HALF_OPEN: "breaker.half_opened",
                State.CLOSED: "breaker.closed",
            }.get(new, "breaker.state_changed")
            _log.warning(
                event,
                dependency=name,
                from_state=old.value,
                to_state=new.value,
                open_s=round(breaker.remaining_open_s(), 3) if new is State.OPEN else None,
            )
            if metrics is not None:
                r = metrics.reliability
                r.breaker_state.labels(name).set(STATE_CODES[new])
                r.breaker_transitions.labels(name, old.value, new.value).inc()

        guard.breaker.add_listener(on_change)
        if metrics is None:
            return
        r = metrics.reliability
        r.breaker_state.labels(name).set(0)
        histogram = r.external_call
        retries = r.retries.labels(name)
        exhausted = r.retry_budget_exhausted.labels(name)
        rejected = r.bulkhead_rejected.labels(name)

        def observe(outcome: str, seconds: float) -> None:
            histogram.labels(name, outcome).observe(seconds)
            if outcome == "rejected":
                rejected.inc()

        def on_retry(attempt: int, error: BaseException, delay: float) -> None:
            retries.inc()
            _log.info(
                "retry.scheduled",
                dependency=name,
                attempt=attempt,
                delay_s=round(delay, 3),
                error=type(error).__name__,
            )

        def on_exhausted(error: BaseException) -> None:
            exhausted.inc()
            _log.warning("retry.budget_exhausted", dependency=name, error=type(error).__name__)

        guard._observe = observe  # the registry wires its own guards
        guard.retry = replace(guard.retry, on_retry=on_retry, on_budget_exhausted=on_exhausted)
