"""The chain walk against the simulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio

import fakeredis
from pydantic import SecretStr

from common.testing import run_workers
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model
from workers.ai_fallback import create as create_ai
from workers.ai_fallback.simulator import ProviderSimulator, Step


async def test_primary_answers(sim: ProviderSimulator) -> None:
    """A healthy primary answers; no fallback, one attempt, usage and cost from the provider."""
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        out = await answer(h, ask("hi there"))
    assert out.type == "ai.completion.succeeded"
    assert out.data.model == "a"
    assert out.data.content == "[a] you said: hi there"
    assert not out.data.fallback_used
    assert [(a.model, a.outcome) for a in out.data.attempts] == [("a", "ok")]
    assert out.data.input_tokens == 5  # the simulator's prompt_tokens: 2 words + 3
    assert out.data.cost_usd > 0


async def test_primary_down_second_answers(sim: ProviderSimulator) -> None:
    """A 500 from the primary falls over to the second model with fallback_used."""
    sim.set_default("a", Step("error", status=503))
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        out = await answer(h, ask())
    assert out.data.model == "b"
    assert out.data.fallback_used
    assert [(a.model, a.outcome) for a in out.data.attempts] == [("a", "server"), ("b", "ok")]


async def test_retry_after_within_cap_is_honoured(sim: ProviderSimulator) -> None:
    """A 429 with a short Retry-After waits that long, then the same model answers."""
    sim.script("a", Step("rate_limit", retry_after=0.08))
    settings = ai_settings([model(sim, "a"), model(sim, "b", priority=200)], retry_after_cap_s=1)
    async with fleet(settings) as (h, _):
        out = await answer(h, ask())
    attempts = out.data.attempts
    assert [(a.model, a.outcome) for a in attempts] == [("a", "rate_limited"), ("a", "ok")]
    assert out.data.model == "a"
    assert not out.data.fallback_used  # the same model answered: no fallback
    assert sim.calls["a"] == 2
    assert sim.call_times["a"][1] - sim.call_times["a"][0] >= 0.08


async def test_retry_after_beyond_cap_cools_the_model(sim: ProviderSimulator) -> None:
    """A 429 beyond the cap cools the model for that long: fallback now, skipped next time."""
    sim.script("a", Step("overloaded", retry_after=30))
    settings = ai_settings([model(sim, "a"), model(sim, "b", priority=200)], retry_after_cap_s=1)
    async with fleet(settings) as (h, service):
        first = await answer(h, ask("one"))
        second = await answer(h, ask("two"))
        ttl = await h.store.execute(lambda r: r.ttl(h.store.key("ai_fallback", "cooldown", "a")))
        state = h.metrics.registry.get_sample_value("eventguard_ai_model_state", {"model": "a"})
        assert 25 < service.health.cooling("a") <= 30
    assert first.data.model == "b"
    assert first.data.fallback_used
    assert [(a.model, a.outcome) for a in second.data.attempts] == [
        ("a", "skipped_cooldown"),
        ("b", "ok"),
    ]
    assert not second.data.fallback_used  # a was skipped, not failed, in this request
    assert sim.calls["a"] == 1
    assert 25 < ttl <= 30
    assert state == 2  # cooling down


async def test_context_length_error_routes_to_bigger_window(sim: ProviderSimulator) -> None:
    """A context-length 400 skips models with no larger window and never cools the model."""
    sim.script("small", Step("context_length"))
    models = [
        model(sim, "small", context_window=8_000),
        model(sim, "smaller", context_window=4_000, priority=200),
        model(sim, "big", context_window=128_000, priority=300),
    ]
    async with fleet(ai_settings(models)) as (h, service):
        out = await answer(h, ask())
        assert service.health.cooling("small") == 0
        again = await answer(h, ask("again"))
    assert [(a.model, a.outcome) for a in out.data.attempts] == [
        ("small", "context_length"),
        ("smaller", "skipped_window"),
        ("big", "ok"),
    ]
    assert out.data.model == "big"
    assert again.data.model == "small"  # not cooled down, not counted against the breaker


async def test_hang_is_cut_by_the_deadline(sim: ProviderSimulator) -> None:
    """A hanging primary is cut when the request's deadline runs out; the answer says so."""
    sim.set_default("a", Step("hang"))
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        out = await answer(h, ask(deadline_s=0.25))
        elapsed = loop.time() - started
    assert out.type == "ai.completion.failed"
    assert out.data.reason == "deadline_exceeded"
    assert [(a.model, a.outcome) for a in out.data.attempts] == [("a", "timeout")]
    assert 0.25 <= elapsed < 1.0


async def test_hang_cut_by_model_timeout_then_fallback(sim: ProviderSimulator) -> None:
    """A hang is cut at the model's timeout and the next model answers within the deadline."""
    sim.set_default("a", Step("hang"))
    models = [model(sim, "a", timeout_s=0.15), model(sim, "b", priority=200)]
    async with fleet(ai_settings(models)) as (h, _):
        out = await answer(h, ask(deadline_s=2))
    assert out.data.model == "b"
    assert out.data.fallback_used
    assert out.data.attempts[0].outcome == "timeout"
    assert 150 <= out.data.attempts[0].latency_ms < 600


async def test_deadline_shrinks_across_the_walk(sim: ProviderSimulator) -> None:
    """The second model only gets what the first left of the deadline."""
    sim.set_default("a", Step("ok", latency_s=0.2, status=200))
    sim.script("a", Step("error", latency_s=0.2))
    sim.set_default("b", Step("hang"))
    models = [model(sim, "a"), model(sim, "b", priority=200)]
    async with fleet(ai_settings(models)) as (h, _):
        out = await answer(h, ask(deadline_s=0.35))
    assert out.data.reason == "deadline_exceeded"
    second = out.data.attempts[1]
    assert second.outcome == "timeout"
    assert second.latency_ms < 250  # 0.35 s minus the ~0.2 s the first model used


async def test_malformed_empty_and_truncated_answers_fall_over(sim: ProviderSimulator) -> None:
    """Malformed JSON, an empty choice list or a truncated body is that model failing."""
    sim.set_default("m", Step("malformed"))
    sim.set_default("e", Step("empty"))
    sim.set_default("t", Step("truncated"))
    models = [
        model(sim, "m"),
        model(sim, "e", priority=200),
        model(sim, "t", priority=300),
        model(sim, "ok", priority=400),
    ]
    async with fleet(ai_settings(models)) as (h, service):
        out = await answer(h, ask())
        error_rates = {n: service.health.health[n].error_rate for n in ("m", "e", "t")}
    assert [(a.model, a.outcome) for a in out.data.attempts] == [
        ("m", "malformed"),
        ("e", "malformed"),
        ("t", "malformed"),
        ("ok", "ok"),
    ]
    assert all(rate > 0 for rate in error_rates.values())


async def test_anthropic_messages_api(sim: ProviderSimulator) -> None:
    """The Anthropic dialect: system prompt top-level, text blocks joined, usage read."""
    models = [model(sim, "claude", provider="anthropic")]
    async with fleet(ai_settings(models)) as (h, _):
        out = await answer(h, ask("bonjour", system="be brief"))
    assert out.data.content == "[claude] you said: bonjour"
    assert out.data.input_tokens == 6  # simulator: 1 word + 5
    sent = sim.requests[-1]
    assert sent["system"] == "be brief"
    assert sent["messages"] == [{"role": "user", "content": "bonjour"}]


async def test_content_policy_fails_by_default(sim: ProviderSimulator) -> None:
    """A content-policy refusal ends the walk with reason content_policy unless configured."""
    sim.set_default("a", Step("content_policy"))
    models = [model(sim, "a"), model(sim, "b", priority=200)]
    async with fleet(ai_settings(models)) as (h, _):
        out = await answer(h, ask())
    assert out.type == "ai.completion.failed"
    assert out.data.reason == "content_policy"
    assert sim.calls["b"] == 0


async def test_content_policy_can_fall_back(sim: ProviderSimulator) -> None:
    """With on_content_policy=fallback the next model is asked."""
    sim.set_default("a", Step("content_policy"))
    models = [model(sim, "a", provider="anthropic"), model(sim, "b", priority=200)]
    async with fleet(ai_settings(models, on_content_policy="fallback")) as (h, _):
        out = await answer(h, ask())
    assert out.data.model == "b"
    assert out.data.attempts[0].outcome == "content_policy"


async def test_auth_failure_disables_model_and_raises_alert(sim: ProviderSimulator) -> None:
    """A 401 disables the model (persisted with its config fingerprint) and raises an alert."""
    sim.set_default("a", Step("auth"))
    models = [model(sim, "a"), model(sim, "b", priority=200)]
    async with fleet(ai_settings(models)) as (h, _):
        first = await answer(h, ask("one"))
        second = await answer(h, ask("two"))
        alert = await h.wait_for("health.alert.raised")
        stored = await h.store.execute(lambda r: r.get(h.store.key("ai_fallback", "disabled", "a")))
    assert first.data.model == "b"
    assert second.data.attempts[0].outcome == "skipped_disabled"
    assert sim.calls["a"] == 1
    assert alert.data.entity_id == "a"
    assert alert.data.rule == "ai_provider_auth_failed"
    assert stored is not None
    assert "test-kkkk" not in first.data.attempts[0].detail  # the echoed key is redacted
    assert "[redacted]" in first.data.attempts[0].detail
    assert "test-kkkk" not in alert.data.summary


async def test_disable_lifts_when_configuration_changes(sim: ProviderSimulator) -> None:
    """A model disabled for its old key is tried again once its key changes."""
    sim.script("a", Step("auth"))
    models = [model(sim, "a"), model(sim, "b", priority=200)]
    redis = fakeredis.FakeAsyncRedis()
    async with run_workers(
        [("ai_fallback", create_ai)], settings=ai_settings(models), redis=redis
    ) as h:
        await answer(h, ask("one"))
    same = ai_settings(models)
    async with run_workers([("ai_fallback", create_ai)], settings=same, redis=redis) as h:
        still = await answer(h, ask("two"))
    changed = same.model_copy(
        update={
            "ai_fallback": same.ai_fallback.model_copy(
                update={"provider_keys": {"sim": SecretStr("rotated-" + "k" * 8)}}
            )
        }
    )
    async with run_workers([("ai_fallback", create_ai)], settings=changed, redis=redis) as h:
        back = await answer(h, ask("three"))
        resolved = await h.wait_for("health.alert.resolved")
    assert still.data.attempts[0].outcome == "skipped_disabled"
    assert back.data.model == "a"
    assert resolved.data.entity_id == "a"
