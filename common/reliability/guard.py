"""``guard(name)``: the one way to make an external call.

retry( breaker( bulkhead( timeout( call )))) -- configured per dependency, with defaults per
kind, chosen by the name's first segment: ``redis``, ``http:<target>``, ``llm:<model>``,
``exchange:<venue>``. The retry layer lives only here: clients are created with their own
retries off.

Configuration, most specific last: the kind's defaults (or the ``config`` a caller passes for
its dependency), then overrides for the kind, then overrides for the name. An override is a
whole :class:`GuardConfig` or a mapping of fields (``{"timeout_s": 0.5, "breaker_open_s":
10}``), as ``Settings.reliability.dependencies`` holds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from common import tracing
from common.metrics import Metrics
from common.reliability.breaker import BreakerConfig, CircuitBreaker
from common.reliability.budget import RetryBudget
from common.reliability.bulkhead import Bulkhead
from common.reliability.clock import Clock, system_clock
from common.reliability.errors import BulkheadFull, CircuitOpen
from common.reliability.hooks import CallObserver, ReliabilityHooks
from common.reliability.retry import RetryPolicy
from common.reliability.shared import SharedBreakerState, SharedStateStore
from common.reliability.timeouts import Timeout

__all__ = ["KIND_DEFAULTS", "Guard", "GuardConfig", "Guards"]

P = ParamSpec("P")
T = TypeVar("T")
_BREAKER_PREFIX = "breaker_"


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
    max_wait_s: float | None = None  # a bulkhead waiter is refused after this long
    max_retry_after_s: float = 30.0
    shared: bool = False  # breaker state shared through Redis (needs Guards(store=...))

    def with_overrides(self, values: Mapping[str, Any]) -> GuardConfig:
        """A copy with ``values`` applied: GuardConfig fields by name, breaker fields prefixed
        ``breaker_``. Unknown names raise ValueError (a typo must not pass silently)."""
        own = {f.name for f in dataclasses.fields(self)} - {"breaker"}
        theirs = {f.name for f in dataclasses.fields(BreakerConfig)}
        mine: dict[str, Any] = {}
        breaker: dict[str, Any] = {}
        for key, value in values.items():
            if key in own:
                mine[key] = value
            elif key.startswith(_BREAKER_PREFIX) and key[len(_BREAKER_PREFIX) :] in theirs:
                breaker[key[len(_BREAKER_PREFIX) :]] = value
            else:
                raise ValueError(f"unknown guard setting {key!r}")
        if breaker:
            mine["breaker"] = replace(self.breaker, **breaker)
        return replace(self, **mine)


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
    _observe: CallObserver = field(default=lambda _o, _s: None, repr=False)
    shared: SharedBreakerState[SharedStateStore] | None = field(default=None, repr=False)

    async def call(self, fn: Callable[[], Awaitable[T]], *, timeout_s: float | None = None) -> T:
        """Run ``fn()`` under retry, breaker, bulkhead and timeout; re-raises the last error.

        ``timeout_s`` replaces the configured per-attempt timeout for this call; the retry
        deadline caps it further. With tracing on, the call runs under a CLIENT span."""
        if tracing.tracer is None:
            return await self._call(fn, timeout_s)
        with tracing.client_span(self.name, self.breaker.state.value):
            try:
                return await self._call(fn, timeout_s)
            except CircuitOpen as refused:  # the breaker's decision, beside the exception
                tracing.add_event(
                    "breaker.rejected",
                    {"state": refused.state, "retry_after_s": refused.retry_after_s},
                )
                raise

    async def _call(self, fn: Callable[[], Awaitable[T]], timeout_s: float | None) -> T:
        per_attempt = timeout_s or self.config.timeout_s

        async def attempt(remaining: float | None) -> T:
            limit = per_attempt if remaining is None else min(per_attempt, remaining)
            return await self.breaker.call(self._bounded, fn, limit)

        return await self.retry.run(attempt)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorator form: ``@guards.guard("http:prices")`` over an ``async def``."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(lambda: fn(*args, **kwargs))

        return wrapper

    async def _bounded(self, fn: Callable[[], Awaitable[T]], limit: float) -> T:
        started = time.perf_counter()
        outcome = "error"
        try:
            async with self.bulkhead, Timeout(limit, self.name):
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
    """The registry of guards (and so of breakers): one per dependency name.

    ``overrides`` maps dependency names or kinds to a GuardConfig or a mapping of fields
    (see :meth:`GuardConfig.with_overrides`). With a ``store``, guards whose config says
    ``shared`` couple their breaker to Redis (see :class:`SharedBreakerState`); their
    background sync starts with the first guard created under a running loop, or at
    :meth:`start`, and stops at :meth:`stop`.
    """

    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        overrides: Mapping[str, GuardConfig | Mapping[str, Any]] | None = None,
        clock: Clock = system_clock,
        store: SharedStateStore | None = None,
        hooks: ReliabilityHooks | None = None,
    ) -> None:
        self._metrics = metrics
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._store = store
        self._hooks = hooks if hooks is not None else ReliabilityHooks(metrics)
        self._guards: dict[str, Guard] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self._instant = False
        self._started = False
        self._hooks.count_breaker_calls(self._call_counts)
        for key, value in self._overrides.items():  # fail at start-up on a bad override
            if not isinstance(value, GuardConfig):
                KIND_DEFAULTS["http"].with_overrides(value)
            elif not key:
                raise ValueError("an override needs a dependency name or kind")

    def guard(self, name: str, *, config: GuardConfig | None = None) -> Guard:
        """The guard of ``name`` (created on first use with its kind's defaults).

        ``config`` is used only when the guard is created; settings overrides apply on top."""
        existing = self._guards.get(name)
        if existing is not None:
            return existing
        cfg = self.config_for(name, config)
        breaker = CircuitBreaker(name, cfg.breaker, clock=self._clock)
        budget = self._budgets.setdefault(
            name, RetryBudget(ratio=cfg.retry_budget_ratio, clock=self._clock)
        )
        retry = RetryPolicy(
            max_attempts=cfg.max_attempts,
            base_s=0.0 if self._instant else cfg.base_backoff_s,
            max_delay_s=0.0 if self._instant else cfg.max_backoff_s,
            deadline_s=cfg.deadline_s,
            max_retry_after_s=0.0 if self._instant else cfg.max_retry_after_s,
            max_hold_s=cfg.max_hold_s,
            budget=budget,
            clock=self._clock,
        )
        bulkhead = Bulkhead(
            name,
            max_concurrent=cfg.max_concurrent,
            max_waiting=cfg.max_waiting,
            max_wait_s=cfg.max_wait_s,
        )
        guard = Guard(
            name,
            cfg,
            breaker,
            self._hooks.instrument_retry(retry, name),
            bulkhead,
            self._hooks.call_observer(name),
        )
        self._hooks.attach_breaker(breaker)
        if cfg.shared and self._store is not None:
            guard.shared = SharedBreakerState(breaker, self._store, metrics=self._metrics)
            if self._started or _loop_running():
                guard.shared.start()
        self._guards[name] = guard
        return guard

    def config_for(self, name: str, config: GuardConfig | None = None) -> GuardConfig:
        """The configuration ``name`` gets: base, then kind overrides, then name overrides."""
        kind = name.split(":", 1)[0]
        cfg = config or KIND_DEFAULTS.get(kind) or KIND_DEFAULTS["http"]
        for key in (kind, name) if kind != name else (name,):
            override = self._overrides.get(key)
            if isinstance(override, GuardConfig):
                if config is None or key == name:
                    cfg = override
            elif override is not None:
                cfg = cfg.with_overrides(override)
        return cfg

    def defaults_for(self, name: str) -> GuardConfig:
        """The defaults of ``name``'s kind (``http`` for unknown kinds), overrides applied."""
        return self.config_for(name)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Every breaker, by dependency name."""
        return {name: guard.breaker for name, guard in self._guards.items()}

    def breaker(self, name: str) -> CircuitBreaker:
        """The breaker of ``name`` (creating its guard if needed): for listeners and admin."""
        return self.guard(name).breaker

    def instant(self) -> None:
        """Test switch: every retry wait of this registry's guards, now and later, is zero."""
        self._instant = True
        for guard in self._guards.values():
            guard.retry.base_s = 0.0
            guard.retry.max_delay_s = 0.0
            guard.retry.max_retry_after_s = 0.0

    def bind_store(self, store: SharedStateStore) -> None:
        """Use ``store`` for shared breakers (the store itself runs behind this registry's
        ``redis`` guard, so it can only be bound after that guard exists)."""
        self._store = store

    async def start(self) -> None:
        """Start the background sync of every shared breaker."""
        self._started = True
        for guard in self._guards.values():
            if guard.shared is not None:
                guard.shared.start()

    async def stop(self) -> None:
        """Stop every shared breaker's background sync."""
        self._started = False
        for guard in self._guards.values():
            if guard.shared is not None:
                await guard.shared.stop()

    def _call_counts(self) -> Iterable[tuple[str, str, int]]:
        for name, guard in self._guards.items():
            counts = guard.breaker.counts
            yield name, "success", counts.success
            yield name, "failure", counts.failure
            yield name, "slow", counts.slow
            yield name, "not_permitted", counts.not_permitted
            yield name, "ignored", counts.ignored


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
