"""guard(): the composed call, its metrics, and pausing a worker while a breaker is open."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import fakeredis
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from structlog.testing import capture_logs

from common.bus.router import Emit
from common.config import Settings
from common.errors import RetryLater
from common.metrics import Metrics
from common.reliability.breaker import BreakerConfig, CircuitBreaker, State
from common.reliability.clock import ManualClock
from common.reliability.errors import BulkheadFull, CallTimeout, CircuitOpen
from common.reliability.guard import KIND_DEFAULTS, Guards
from common.reliability.hooks import ReliabilityHooks
from common.reliability.retry import RetryPolicy
from common.service import BaseService, WorkerContext
from common.store import Store
from common.testing import run_workers
from schemas.envelope import Envelope
from schemas.quarantine import QuarantineRequested

FAST = replace(
    KIND_DEFAULTS["http"],
    timeout_s=0.05,
    max_attempts=2,
    base_backoff_s=0.0,
    max_backoff_s=0.0,
    breaker=BreakerConfig(window_size=4, minimum_calls=2, open_s=0.1, jitter=0.0),
)


async def test_guard_retries_times_out_and_records_metrics() -> None:
    """A hanging call is cut by the timeout, retried once, and counted per outcome."""
    metrics = Metrics(CollectorRegistry())
    guards = Guards(metrics=metrics, overrides={"http:slow": FAST})
    attempts = 0

    async def hang() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(10)
        return "never"

    with pytest.raises(TimeoutError):
        await guards.guard("http:slow").call(hang)
    assert attempts == 2
    sample = metrics.registry.get_sample_value(
        "eventguard_external_call_seconds_count", {"dependency": "http:slow", "outcome": "timeout"}
    )
    assert sample == 2.0
    assert guards.guard("http:slow").breaker.state is State.OPEN
    with pytest.raises(CircuitOpen):
        await guards.guard("http:slow").call(hang)
    calls = metrics.registry.get_sample_value(
        "eventguard_breaker_calls_total", {"dependency": "http:slow", "outcome": "not_permitted"}
    )
    assert calls == 1.0


def test_kind_defaults_follow_the_name() -> None:
    """redis, llm and exchange names get their kind's defaults; others get http's."""
    guards = Guards()
    assert guards.guard("redis").config is KIND_DEFAULTS["redis"]
    assert guards.guard("llm:openai:gpt").config is KIND_DEFAULTS["llm"]
    assert guards.guard("exchange:binance").config is KIND_DEFAULTS["exchange"]
    assert guards.guard("something").config is KIND_DEFAULTS["http"]


class Downstream(BaseService):
    """Calls one critical dependency per message."""

    name = "down"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.healthy = False
        self.handled = 0
        self.router.add(QuarantineRequested, self.handle)

    def critical_dependencies(self) -> list[str]:
        return ["http:flaky"]

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        async def call() -> str:
            if not self.healthy:
                raise OSError("down")
            return "ok"

        await self.ctx.guards.guard("http:flaky").call(call)
        self.handled += 1
        return []


async def test_open_critical_breaker_pauses_consumer_and_half_open_resumes() -> None:
    """While the critical breaker is open the worker takes nothing; it resumes on half-open."""
    metrics = Metrics(CollectorRegistry())
    guards = Guards(metrics=metrics, overrides={"http:flaky": FAST})
    async with run_workers([("down", Downstream)], guards=guards) as fleet:
        service = fleet.runtime.workers["down"].service
        assert isinstance(service, Downstream)
        data = QuarantineRequested(kind="producer", entity_id="p", reason="r", requested_by="t")
        await fleet.publish("quarantine.requested", data)
        async with asyncio.timeout(5):
            while not fleet.runtime.workers["down"].paused:
                await asyncio.sleep(0.005)
        assert fleet.broker.active_consumers("eventguard.down") == 0
        ready = await fleet.runtime.ready()
        assert ready["consumers"] is False
        service.healthy = True
        async with asyncio.timeout(5):
            while service.handled == 0:
                await asyncio.sleep(0.01)
        assert not fleet.runtime.workers["down"].paused
        assert guards.guard("http:flaky").breaker.state is State.CLOSED


FAST_RETRYING = replace(
    KIND_DEFAULTS["http"],
    timeout_s=0.02,
    max_attempts=3,
    base_backoff_s=0.0,
    max_backoff_s=0.0,
    breaker=BreakerConfig(window_size=4, minimum_calls=2, open_s=30, jitter=0.0),
)


class Transient(OSError):
    """A transient failure."""


def test_settings_overrides_apply_by_kind_then_name() -> None:
    """Kind overrides apply to every name of the kind; name overrides win over them."""
    settings = Settings(
        reliability={
            "dependencies": {
                "llm": {"timeout_s": 90.0, "breaker_minimum_calls": 3},
                "llm:gpt": {"timeout_s": 20.0, "shared": True},
            }
        }
    )
    guards = Guards(overrides=settings.reliability.dependencies)
    gpt = guards.guard("llm:gpt").config
    claude = guards.guard("llm:claude").config
    assert (gpt.timeout_s, gpt.breaker.minimum_calls, gpt.shared) == (20.0, 3, True)
    assert (claude.timeout_s, claude.breaker.minimum_calls, claude.shared) == (90.0, 3, False)
    assert guards.guard("redis").config is KIND_DEFAULTS["redis"]


def test_settings_overrides_apply_over_a_callers_config() -> None:
    """A worker's own config for its dependency still yields to the operator's overrides."""
    guards = Guards(overrides={"exchange": {"max_attempts": 1}})
    own = replace(KIND_DEFAULTS["exchange"], timeout_s=1.5)
    cfg = guards.guard("exchange:bybit", config=own).config
    assert (cfg.timeout_s, cfg.max_attempts) == (1.5, 1)


def test_unknown_or_invalid_overrides_stop_start_up() -> None:
    """A misspelt field or an impossible breaker value fails when the registry is built."""
    with pytest.raises(ValueError, match="timeout_sec"):
        Guards(overrides={"redis": {"timeout_sec": 1}})
    with pytest.raises(ValueError, match="rates"):
        Guards(overrides={"redis": {"breaker_failure_rate": 2.0}})


async def test_timeout_in_a_guard_names_the_dependency() -> None:
    """A hung attempt is cut with a CallTimeout naming the dependency, then retried."""
    guards = Guards(overrides={"http:slow": replace(FAST_RETRYING, max_attempts=2)})
    attempts = 0

    async def hang() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(10)
        return "never"

    with pytest.raises(CallTimeout) as cut:
        await guards.guard("http:slow").call(hang, timeout_s=0.005)
    assert cut.value.name == "http:slow"
    assert attempts == 2


async def test_bulkhead_refusals_do_not_trip_the_breaker_or_get_retried() -> None:
    """A full bulkhead refuses fast; the breaker ignores it and retry does not repeat it."""
    cfg = replace(FAST_RETRYING, max_concurrent=1, max_waiting=0, timeout_s=5.0)
    guards = Guards(overrides={"http:narrow": cfg})
    guard = guards.guard("http:narrow")
    gate = asyncio.Event()

    async def hold() -> str:
        await gate.wait()
        return "held"

    holder = asyncio.create_task(guard.call(hold))
    await asyncio.sleep(0)
    for _ in range(5):
        with pytest.raises(BulkheadFull):
            await guard.call(hold)
    assert guard.breaker.state is State.CLOSED
    assert guard.breaker.counts.ignored == 5
    gate.set()
    assert await holder == "held"


async def test_open_breaker_is_not_retried_and_long_waits_become_redelivery() -> None:
    """CircuitOpen ends the retry loop at once; a wait over max_hold_s raises RetryLater."""
    guards = Guards(
        overrides={"http:down": FAST_RETRYING, "http:later": replace(FAST_RETRYING, max_hold_s=1.0)}
    )
    down = guards.guard("http:down")
    down.breaker.force_open()
    attempts = 0

    async def count() -> str:
        nonlocal attempts
        attempts += 1
        raise Transient("down")

    with pytest.raises(CircuitOpen):
        await down.call(count)
    assert attempts == 0

    class Throttled(OSError):
        retry_after_s = 20.0

    async def throttled() -> str:
        raise Throttled

    with pytest.raises(RetryLater) as later:
        await guards.guard("http:later").call(throttled)
    assert later.value.delay == 20.0


async def test_instant_applies_to_guards_created_later() -> None:
    """Guards.instant() makes waits zero for existing and future guards."""
    guards = Guards()
    guards.instant()
    guard = guards.guard("exchange:later")
    assert (guard.retry.base_s, guard.retry.max_delay_s, guard.retry.max_retry_after_s) == (
        0.0,
        0.0,
        0.0,
    )


async def test_guard_decorator_form() -> None:
    """@guard wraps an async def under the whole composition."""
    guards = Guards(overrides={"http:deco": FAST_RETRYING})
    attempts = 0

    @guards.guard("http:deco")
    async def fetch(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise Transient("once")
        return x * 2

    assert await fetch(21) == 42
    assert attempts == 2


async def test_hooks_log_dotted_events_and_count_metrics() -> None:
    """Retries, give-ups and breaker changes produce dotted log events and metrics."""
    metrics = Metrics(CollectorRegistry())
    guards = Guards(metrics=metrics, overrides={"http:flaky": FAST_RETRYING})
    guard = guards.guard("http:flaky")

    async def down() -> str:
        raise Transient("down")

    # The real error comes out, not the refusal after it.
    with capture_logs() as logs, pytest.raises(Transient) as raised:
        await guard.call(down)
    assert any("retry refused" in note for note in raised.value.__notes__)
    events = [e["event"] for e in logs]
    assert events == ["retry.scheduled", "breaker.opened", "retry.scheduled", "retry.gave_up"]
    assert logs[-1]["reason"] == "refused"
    value = metrics.registry.get_sample_value
    assert value("eventguard_retries_total", {"dependency": "http:flaky"}) == 2.0
    assert value("eventguard_breaker_state", {"dependency": "http:flaky"}) == 2.0
    assert (
        value(
            "eventguard_breaker_transitions_total",
            {"dependency": "http:flaky", "from_state": "closed", "to_state": "open"},
        )
        == 1.0
    )
    assert value(
        "eventguard_breaker_calls_total", {"dependency": "http:flaky", "outcome": "failure"}
    )


async def test_hooks_work_for_a_standalone_breaker_and_policy() -> None:
    """ReliabilityHooks wires a breaker and a retry policy built by hand (no registry)."""
    metrics = Metrics(CollectorRegistry())
    hooks = ReliabilityHooks(metrics)
    clock = ManualClock()
    breaker = CircuitBreaker("solo", BreakerConfig(window_size=2, minimum_calls=1), clock=clock)
    hooks.attach_breaker(breaker)
    budget_spent: list[BaseException] = []
    policy = hooks.instrument_retry(
        RetryPolicy(max_attempts=3, clock=clock, on_budget_exhausted=budget_spent.append), "solo"
    )

    async def down(_remaining: float | None) -> str:
        raise Transient("down")

    with capture_logs() as logs:
        with pytest.raises(Transient):
            await policy.run(down)
        breaker.force_open()
    events = [e["event"] for e in logs]
    assert events.count("retry.scheduled") == 2
    assert "retry.gave_up" in events
    assert "breaker.forced_open" in events
    value = metrics.registry.get_sample_value
    assert value("eventguard_retries_total", {"dependency": "solo"}) == 2.0
    assert value("eventguard_breaker_state", {"dependency": "solo"}) == 3.0


async def test_budget_exhaustion_is_logged_and_counted() -> None:
    """A spent budget logs retry.budget_exhausted and counts it per dependency."""
    metrics = Metrics(CollectorRegistry())
    cfg = replace(
        FAST_RETRYING,
        retry_budget_ratio=0.0,
        breaker=replace(FAST_RETRYING.breaker, minimum_calls=100),
    )
    guards = Guards(metrics=metrics, overrides={"http:storm": cfg})
    guard = guards.guard("http:storm")
    guard.retry.budget._reserve = 0.0  # type: ignore[union-attr]  # no per-second floor left
    guard.retry.budget.min_per_s = 0.0  # type: ignore[union-attr]

    async def down() -> str:
        raise Transient("down")

    with capture_logs() as logs, pytest.raises(Transient):
        await guard.call(down)
    assert any(e["event"] == "retry.budget_exhausted" for e in logs)
    assert (
        metrics.registry.get_sample_value(
            "eventguard_retry_budget_exhausted_total", {"dependency": "http:storm"}
        )
        == 1.0
    )


async def test_store_runs_every_command_behind_a_redis_guard() -> None:
    """A Store without an injected guard still runs each command through a redis guard."""
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    assert store.guard.name == "redis"
    await store.execute(lambda r: r.set(store.key("a"), b"1"))
    assert await store.execute(lambda r: r.get(store.key("a"))) == b"1"
    assert store.guard.breaker.counts.success == 2
    guards = Guards()
    injected = Store(fakeredis.FakeAsyncRedis(), guard=guards.guard("redis"))
    assert await injected.ping()
    assert guards.breaker("redis").counts.success == 1


async def test_shared_guard_couples_to_redis_and_falls_back_without_it() -> None:
    """A guard configured shared leases probes through Redis; with Redis unreachable (a closed
    port) its sync falls back to local state at once, counts it, and stops cleanly."""
    metrics = Metrics(CollectorRegistry())
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    store = Store(client, prefix="t:")
    guards = Guards(metrics=metrics, store=store, overrides={"http:fleet": {"shared": True}})
    guard = guards.guard("http:fleet")
    assert guard.shared is not None
    assert guard.breaker.probe_gate is not None
    await guards.start()
    async with asyncio.timeout(2):
        await guard.shared.sync_once()
        assert await guard.shared.lease_probe()  # unreachable Redis never blocks a probe
    await guards.stop()
    fallbacks = metrics.registry.get_sample_value(
        "eventguard_breaker_shared_fallback_total", {"dependency": "http:fleet"}
    )
    assert fallbacks is not None
    assert fallbacks >= 2
    assert guards.guard("http:solo").shared is None
    await store.close()
