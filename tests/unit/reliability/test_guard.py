"""guard(): the composed call, its metrics, and pausing a worker while a breaker is open."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from common.bus.router import Emit
from common.metrics import Metrics
from common.reliability import KIND_DEFAULTS, BreakerConfig, CircuitOpen, Guards, State
from common.service import BaseService, WorkerContext
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
        self.router.add("quarantine.requested", self.handle)

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
