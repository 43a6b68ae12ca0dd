"""``ai.model.disable.requested`` / ``ai.model.enable.requested``: operators switch a model off
and on by events; every replica honours the switch."""

from __future__ import annotations

from common.testing import run_workers
from schemas.ai import ModelDisableRequested, ModelEnableRequested
from schemas.envelope import Actor
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model
from workers.ai_fallback import AiFallbackService
from workers.ai_fallback import create as create_ai
from workers.ai_fallback.simulator import ProviderSimulator

OPERATOR = Actor(subject="alice", role="operator")


async def test_a_disabled_model_is_skipped_until_an_operator_enables_it(
    sim: ProviderSimulator,
) -> None:
    """Disable answers ai.model.disabled and the chain skips the model; enable answers
    ai.model.enabled and the model answers again; a second disable says nothing changed."""
    settings = ai_settings([model(sim, "a"), model(sim, "b", priority=200)])
    async with fleet(settings) as (h, s):
        request = ModelDisableRequested(model="a", note="incident 7")
        await h.publish("ai.model.disable.requested", request, actor=OPERATOR)
        done = await h.wait_for("ai.model.disabled")
        assert (done.data.model, done.data.disabled_by, done.data.changed) == ("a", "alice", True)
        assert s.health.health["a"].off
        assert {row["name"]: row["state"] for row in s.describe()}["a"] == "disabled"
        served = await answer(h, ask("first"))
        assert served.data.model == "b"
        assert served.data.attempts[0].outcome == "skipped_disabled"
        await h.publish("ai.model.disable.requested", request, actor=OPERATOR)
        await h.wait_for("ai.model.disabled", lambda e: not e.data.changed)
        await h.publish(
            "ai.model.enable.requested", ModelEnableRequested(model="a"), actor=OPERATOR
        )
        enabled = await h.wait_for("ai.model.enabled")
        assert (enabled.data.enabled_by, enabled.data.lifted) == ("alice", True)
        assert (await answer(h, ask("second"))).data.model == "a"


async def test_the_switch_survives_a_restart_and_reaches_a_replica_through_redis(
    sim: ProviderSimulator,
) -> None:
    """The disable is in Redis: a replica that re-reads (resync, or the broadcast answer) has it."""
    settings = ai_settings([model(sim, "a"), model(sim, "b", priority=200)])
    async with fleet(settings) as (h, s):
        await h.publish(
            "ai.model.disable.requested", ModelDisableRequested(model="a"), actor=OPERATOR
        )
        await h.wait_for("ai.model.disabled")
        other = AiFallbackService(s.ctx)  # a second replica over the same Redis
        assert not other.health.health["a"].off
        await other.resync()
        assert other.health.health["a"].off


async def test_requests_without_an_operator_or_for_unknown_models_change_nothing(
    sim: ProviderSimulator,
) -> None:
    """No actor, a viewer actor, or an unknown model: dead-lettered, never answered."""
    settings = ai_settings([model(sim, "a")])
    async with run_workers([("ai_fallback", create_ai)], settings=settings) as h:
        service = h.runtime.workers["ai_fallback"].service
        assert isinstance(service, AiFallbackService)
        viewer = Actor(subject="bob", role="user")
        await h.publish("ai.model.disable.requested", ModelDisableRequested(model="a"))
        await h.publish(
            "ai.model.disable.requested", ModelDisableRequested(model="a"), actor=viewer
        )
        await h.publish(
            "ai.model.disable.requested", ModelDisableRequested(model="zz"), actor=OPERATOR
        )
        await h.settle()
        reasons = sorted(str(m.headers.get("x-eventguard-reason")) for m in h.dead())
        assert reasons == ["handler_rejected", "unauthorized", "unauthorized"]
        assert not h.emitted("ai.model.disabled")
        assert not service.health.health["a"].off
