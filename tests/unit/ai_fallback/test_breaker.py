"""Each model's breaker (from common/reliability) in the walk: fast failover and recovery."""

from __future__ import annotations

import asyncio

from common.config import Settings
from common.reliability.breaker_types import State
from common.reliability.clock import ManualClock
from common.reliability.guard import Guards
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model, reply_to
from workers.ai_fallback.simulator import ProviderSimulator, Step


def _settings(sim: ProviderSimulator, *, timeout_s: float = 5.0) -> Settings:
    return ai_settings(
        [model(sim, "a", timeout_s=timeout_s), model(sim, "b", priority=200)],
        breaker_window=2,
        breaker_minimum_calls=2,
        breaker_open_s=30.0,
    )


async def test_failover_adds_no_waiting_once_the_breaker_opens(sim: ProviderSimulator) -> None:
    """A hanging primary costs its timeout until its breaker opens; then it is skipped at once."""
    sim.set_default("a", Step("hang"))
    settings = ai_settings(
        [model(sim, "a", timeout_s=0.15), model(sim, "b", priority=200)],
        breaker_window=2,
        breaker_minimum_calls=2,
    )
    async with fleet(settings) as (h, service):
        loop = asyncio.get_running_loop()
        slow = [await answer(h, ask(f"slow {i}")) for i in range(2)]
        opened = service.calls.breaker(service.models["a"]).state
        started = loop.time()
        fast = await answer(h, ask("fast"))
        elapsed = loop.time() - started
        state = h.metrics.registry.get_sample_value("eventguard_ai_model_state", {"model": "a"})
    assert all(o.data.attempts[0].outcome == "timeout" for o in slow)
    assert all(o.data.fallback_used for o in slow)
    assert opened is State.OPEN
    assert [(a.model, a.outcome) for a in fast.data.attempts] == [
        ("a", "skipped_breaker_open"),
        ("b", "ok"),
    ]
    assert not fast.data.fallback_used
    assert elapsed < 0.1  # far below the primary's 0.15 s timeout: no waiting on it
    assert sim.calls["a"] == 2
    assert state == 3


async def test_refusals_do_not_trip_the_breaker(sim: ProviderSimulator) -> None:
    """429s and context-length errors never count toward the breaker."""
    sim.set_default("a", Step("context_length"))
    async with fleet(_settings(sim)) as (h, service):
        for i in range(4):
            await answer(h, ask(f"q{i}"))
        state = service.calls.breaker(service.models["a"]).state
    assert state is State.CLOSED
    assert sim.calls["a"] == 4


async def test_half_open_probe_brings_a_recovered_model_back(sim: ProviderSimulator) -> None:
    """After the open period (injected clock) one probe reaches the model; success closes it."""
    clock = ManualClock()
    sim.set_default("a", Step("error", status=503))
    async with fleet(_settings(sim), guards=Guards(clock=clock)) as (h, service):
        breaker = service.calls.breaker(service.models["a"])
        for i in range(2):
            await answer(h, ask(f"fail {i}"))
        assert breaker.state is State.OPEN
        sim.set_default("a", Step("ok"))
        still_open = await answer(h, ask("while open"))
        clock.advance(40.0)  # past open_s (30 s) plus jitter
        assert service.calls.breaker(service.models["a"]).state is State.HALF_OPEN
        probe = await answer(h, ask("probe"))
        after = await answer(h, ask("after"))
        state = h.metrics.registry.get_sample_value("eventguard_ai_model_state", {"model": "a"})
    assert still_open.data.attempts[0].outcome == "skipped_breaker_open"
    assert [(a.model, a.outcome) for a in probe.data.attempts] == [("a", "ok")]
    assert service.calls.breaker(service.models["a"]).state is State.CLOSED
    assert after.data.model == "a"
    assert sim.calls["a"] == 4  # two failures, the probe, the next request
    assert state == 0


async def test_concurrency_slot_is_not_held_across_the_walk(sim: ProviderSimulator) -> None:
    """With a model bulkhead of one, a request that fell over frees the slot before the next
    model is called, so a concurrent request can use the first model meanwhile."""
    sim.script("a", Step("error", latency_s=0.05))
    sim.set_default("a", Step("ok", latency_s=0.05))
    sim.set_default("b", Step("ok", latency_s=0.3))
    models = [model(sim, "a", max_concurrency=1), model(sim, "b", priority=200)]
    async with fleet(ai_settings(models)) as (h, _):
        loop = asyncio.get_running_loop()
        first = await h.publish("ai.completion.requested", ask("first"))
        await asyncio.sleep(0.1)  # first has failed on a and is waiting on b now
        started = loop.time()
        second = await answer(h, ask("second"))
        elapsed = loop.time() - started
        first_out = await reply_to(h, first.id)
    assert second.data.model == "a"
    assert elapsed < 0.25  # did not wait for first's call to b
    assert first_out.data.model == "b"
