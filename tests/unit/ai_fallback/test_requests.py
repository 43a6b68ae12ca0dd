"""Bad requests and quarantine: each answered with a clear outcome, never dead-lettered."""

from __future__ import annotations

import pytest

from schemas.ai import CompletionRequested
from schemas.quarantine import QuarantineEntryAdded, QuarantineEntryReleased
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model
from workers.ai_fallback.simulator import ProviderSimulator


@pytest.mark.parametrize(
    ("request_", "reason", "words"),
    [
        (CompletionRequested(messages=[]), "bad_request", "messages must not be empty"),
        (ask(max_tokens=-5), "bad_request", "max_tokens must be at least 1"),
        (ask(models=["a", "nope"]), "unknown_model", "nope"),
        (ask("word " * 9_000), "prompt_too_large", "fits no model's window"),
    ],
)
async def test_bad_requests_fail_with_reason(
    sim: ProviderSimulator, request_: CompletionRequested, reason: str, words: str
) -> None:
    """Empty messages, negative max_tokens, an unknown model or an oversized prompt fail clearly."""
    async with fleet(ai_settings([model(sim, "a")])) as (h, _):
        out = await answer(h, request_)
        dead = h.dead()
    assert out.type == "ai.completion.failed"
    assert out.data.reason == reason
    assert words in out.data.detail
    assert not dead
    assert sim.calls["a"] == 0


async def test_request_chain_is_respected(sim: ProviderSimulator) -> None:
    """A request naming its models uses exactly that order."""
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        out = await answer(h, ask(models=["b", "a"]))
    assert out.data.model == "b"


async def test_quarantined_model_is_skipped_until_released(sim: ProviderSimulator) -> None:
    """quarantine.entry.added for a model skips it; quarantine.entry.released brings it back."""
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        added = QuarantineEntryAdded(
            record_id="r1", kind="ai_model", entity_id="a", reason="error rate"
        )
        await h.publish("quarantine.entry.added", added)
        await h.settle()
        state = h.metrics.registry.get_sample_value("eventguard_ai_model_state", {"model": "a"})
        during = await answer(h, ask("one"))
        released = QuarantineEntryReleased(
            record_id="r1", kind="ai_model", entity_id="a", released_by="op"
        )
        await h.publish("quarantine.entry.released", released)
        await h.settle()
        after = await answer(h, ask("two"))
    assert state == 5
    assert [(a.model, a.outcome) for a in during.data.attempts] == [
        ("a", "skipped_quarantined"),
        ("b", "ok"),
    ]
    assert not during.data.fallback_used
    assert after.data.model == "a"
    assert sim.calls["a"] == 1


async def test_no_models_configured(sim: ProviderSimulator) -> None:
    """With no model configured every request fails with reason no_models."""
    async with fleet(ai_settings([])) as (h, _):
        out = await answer(h, ask())
    assert out.data.reason == "no_models"
