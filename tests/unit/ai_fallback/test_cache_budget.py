"""Cache, single-flight and budgets, against the simulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

from common.testing import Harness
from schemas.ai import Message
from schemas.envelope import Actor, Envelope
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model, reply_to
from workers.ai_fallback.cache import cache_key
from workers.ai_fallback.simulator import ProviderSimulator, Step


def _hits(h: object, result: str) -> float:
    value = h.metrics.registry.get_sample_value(  # type: ignore[attr-defined]
        "eventguard_ai_cache_lookups_total", {"result": result}
    )
    return value or 0.0


async def test_cache_hit_on_repeat_records_answering_model(sim: ProviderSimulator) -> None:
    """A repeated deterministic request is served from Redis, naming the model that answered."""
    sim.script("a", Step("error"))
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        first = await answer(h, ask("same"))
        second = await answer(h, ask("same"))
        assert _hits(h, "hit") == 1
        assert _hits(h, "miss") == 1
    assert first.data.model == "b"
    assert not first.data.cached
    assert second.data.cached
    assert second.data.model == "b"
    assert second.data.content == first.data.content
    assert second.data.cost_usd == 0
    assert sim.calls["b"] == 1


async def test_cache_keys_differ_in_one_parameter(sim: ProviderSimulator) -> None:
    """Changing any one answer-changing parameter misses the cache."""
    base = ask("q")
    variants = [
        ask("q", max_tokens=100),
        ask("q", seed=7),
        ask("q", system="s"),
        ask("q", tenant="t2"),
        base.model_copy(update={"messages": [Message(role="assistant", content="q")]}),
    ]
    chains = (["a", "b"], ["b", "a"], ["a"])
    keys = {cache_key(base, chain) for chain in chains}
    keys |= {cache_key(v, ["a", "b"]) for v in variants}
    assert len(keys) == len(chains) + len(variants)
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        await answer(h, base)
        for variant in variants[:4]:
            out = await answer(h, variant)
            assert not out.data.cached
        again = await answer(h, base)
    assert again.data.cached
    assert sim.calls["a"] == 5


async def test_nondeterministic_requests_bypass_cache_unless_opted_in(
    sim: ProviderSimulator,
) -> None:
    """temperature > 0 is not cached; cache=True opts in."""
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        await answer(h, ask("warm", temperature=0.7))
        warm = await answer(h, ask("warm", temperature=0.7))
        await answer(h, ask("opt", temperature=0.7, cache=True))
        opted = await answer(h, ask("opt", temperature=0.7, cache=True))
    assert not warm.data.cached
    assert opted.data.cached
    assert sim.calls["a"] == 3


async def test_single_flight_identical_concurrent_requests(sim: ProviderSimulator) -> None:
    """Five identical concurrent requests make one provider call and all get the answer."""
    sim.set_default("a", Step("ok", latency_s=0.2))
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        sent = await asyncio.gather(
            *(h.publish("ai.completion.requested", ask("together")) for _ in range(5))
        )
        outs = [await reply_to(h, e.id) for e in sent]
        shared = _hits(h, "shared")
    assert sim.calls["a"] == 1
    assert {o.data.content for o in outs} == {"[a] you said: together"}
    assert shared == 4


async def test_per_request_cost_cap_fails_fast(sim: ProviderSimulator) -> None:
    """A request whose worst case exceeds its max_cost_usd on every model fails before any call."""
    async with fleet(ai_settings([model(sim, "a", output_usd_per_mtok=100.0)])) as (h, _):
        out = await answer(h, ask(max_tokens=1_000, max_cost_usd=0.0001))
    assert out.type == "ai.completion.failed"
    assert out.data.reason == "over_budget"
    assert "per-request limit" in out.data.detail
    assert sim.calls["a"] == 0


async def test_cost_cap_skips_expensive_models(sim: ProviderSimulator) -> None:
    """Within a request's cost cap, a too-expensive model is skipped for a cheaper one."""
    models = [
        model(sim, "dear", output_usd_per_mtok=1_000.0),
        model(sim, "cheap", priority=200, output_usd_per_mtok=1.0),
    ]
    async with fleet(ai_settings(models)) as (h, _):
        out = await answer(h, ask(max_tokens=100, max_cost_usd=0.01))
    assert [(a.model, a.outcome) for a in out.data.attempts] == [
        ("dear", "skipped_budget"),
        ("cheap", "ok"),
    ]


async def test_actor_token_budget_checked_before_and_recorded_after(
    sim: ProviderSimulator,
) -> None:
    """Usage is recorded per actor; once the window's budget is spent the actor fails fast."""
    settings = ai_settings([model(sim, "a")], actor_max_tokens=45)
    alice, bob = Actor(subject="alice", role="user"), Actor(subject="bob", role="user")
    async with fleet(settings) as (h, _):
        first = await answer(h, ask("one two", max_tokens=20, temperature=0.5), actor=alice)
        second = await answer(h, ask("three four", max_tokens=20, temperature=0.5), actor=alice)
        third = await answer(h, ask("five six", max_tokens=20, temperature=0.5), actor=alice)
        other = await answer(h, ask("five six", max_tokens=20, temperature=0.5), actor=bob)
    assert first.type == second.type == "ai.completion.succeeded"
    assert third.type == "ai.completion.failed"
    assert third.data.reason == "over_budget"
    assert "actor token budget" in third.data.detail
    assert other.type == "ai.completion.succeeded"
    assert sim.calls["a"] == 3


async def test_global_cost_budget(sim: ProviderSimulator) -> None:
    """The global money budget stops every actor once spent."""
    settings = ai_settings(
        [model(sim, "a", input_usd_per_mtok=1_000.0, output_usd_per_mtok=1_000.0)],
        global_max_cost_usd=0.05,
    )
    async with fleet(settings) as (h, _):
        outs = [await answer(h, ask(f"n{i}", max_tokens=10, temperature=1)) for i in range(8)]
    reasons = [o.data.reason if o.type == "ai.completion.failed" else "ok" for o in outs]
    assert reasons[0] == "ok"
    assert "over_budget" in reasons
    failed = next(o for o in outs if o.type == "ai.completion.failed")
    assert "global cost budget" in failed.data.detail


async def test_without_an_actor_the_budget_is_the_producers(sim: ProviderSimulator) -> None:
    """No actor: usage counts against the admitted producer (RabbitMQ's user), so one service
    cannot spend another's budget nor escape the per-requester limit."""
    settings = ai_settings([model(sim, "a")], actor_max_tokens=45)

    async def from_producer(h: Harness, text: str, user_id: str) -> Envelope[Any]:
        request = ask(text, max_tokens=20, temperature=0.5)
        sent = await h.publish("ai.completion.requested", request, user_id=user_id)
        return await reply_to(h, sent.id)

    async with fleet(settings) as (h, _):
        first = await from_producer(h, "one two", "chat")
        second = await from_producer(h, "three four", "chat")
        third = await from_producer(h, "five six", "chat")
        other = await from_producer(h, "five six", "marketplace")
    assert first.type == second.type == "ai.completion.succeeded"
    assert third.data.reason == "over_budget"
    assert other.type == "ai.completion.succeeded"
