"""Health-based ordering and the metrics a walk leaves behind."""

from __future__ import annotations

from common.service import WorkerContext
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model
from workers.ai_fallback import AiFallbackService
from workers.ai_fallback.simulator import ProviderSimulator, Step


async def test_equal_priority_models_ordered_by_latency(sim: ProviderSimulator) -> None:
    """Among equal priorities the faster model (EWMA latency) is tried first; priority wins."""
    sim.set_default("slow", Step("ok", latency_s=0.08))
    sim.set_default("fast", Step("ok", latency_s=0.005))
    models = [
        model(sim, "slow", priority=10),
        model(sim, "fast", priority=10),
        model(sim, "last", priority=20),
    ]
    async with fleet(ai_settings(models)) as (h, service):
        await answer(h, ask("1", models=["slow"]))
        await answer(h, ask("2", models=["fast"]))
        order = service.health.order(service.models)
        out = await answer(h, ask("3"))
    assert order == ["fast", "slow", "last"]
    assert out.data.model == "fast"


async def test_degraded_model_goes_behind_its_peers(sim: ProviderSimulator) -> None:
    """A model whose error rate passed one half goes behind healthy peers of equal priority."""
    sim.set_default("flaky", Step("error"))
    models = [model(sim, "flaky", priority=10), model(sim, "steady", priority=10)]
    async with fleet(ai_settings(models, health_alpha=0.6)) as (h, service):
        first = await answer(h, ask("1"))
        order = service.health.order(service.models)
        second = await answer(h, ask("2"))
    assert [a.model for a in first.data.attempts] == ["flaky", "steady"]
    assert order == ["steady", "flaky"]
    assert [a.model for a in second.data.attempts] == ["steady"]


async def test_walk_metrics(sim: ProviderSimulator) -> None:
    """Requests, attempts, fallbacks by from/to/reason, tokens by direction and cost are counted."""
    sim.script("a", Step("error", status=500))
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, _):
        out = await answer(h, ask("hello there"))
        value = h.metrics.registry.get_sample_value

        def sample(name: str, **labels: str) -> float:
            return value(name, labels) or 0.0

        assert sample("eventguard_ai_requests_total", outcome="succeeded", reason="") == 1
        assert sample("eventguard_ai_attempts_total", model="a", outcome="server") == 1
        assert sample("eventguard_ai_attempts_total", model="b", outcome="ok") == 1
        assert (
            sample("eventguard_ai_fallbacks_total", from_model="a", to_model="b", reason="server")
            == 1
        )
        assert sample("eventguard_ai_tokens_total", model="b", direction="input") == (
            out.data.input_tokens
        )
        assert sample("eventguard_ai_tokens_total", model="b", direction="output") == (
            out.data.output_tokens
        )
        assert sample("eventguard_ai_cost_usd_total", model="b") == out.data.cost_usd
        assert sample("eventguard_ai_cache_lookups_total", result="miss") == 1


async def test_entity_error_rates_for_the_heartbeat(sim: ProviderSimulator) -> None:
    """The worker reports each model's error rate under ai_model:<name>."""
    sim.set_default("a", Step("error"))
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, s):
        await answer(h, ask())
        rates = s.entity_error_rates()
    assert rates["ai_model:a"] > 0
    assert rates["ai_model:b"] == 0


async def test_admin_models_page_describes_the_chain(sim: ProviderSimulator) -> None:
    """GET /admin/ai/models lists each model's state and health, never its key."""
    sim.set_default("a", Step("auth"))
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, s):
        await answer(h, ask())
        rows = {row["name"]: row for row in s.describe()}
        routes = [(r.method, r.path, r.min_role) for r in s.admin_routes()]
    assert rows["a"]["state"] == "disabled"
    assert rows["b"]["state"] == "healthy"
    assert rows["b"]["latency_ms"] is not None
    assert "test-kkkk" not in str(rows)
    assert routes == [
        ("GET", "ai/models", "operator"),
        ("POST", "ai/models/{model}/enable", "operator"),
    ]


async def test_state_gauge_follows_cooldown_expiry_without_traffic(
    sim: ProviderSimulator,
) -> None:
    """The state gauge reads cooling (2) during a cool-down and healthy (0) after it, unasked."""
    now = [1_000.0]
    sim.script("a", Step("rate_limit", retry_after=30))
    settings = ai_settings([model(sim, "a"), model(sim, "b", priority=200)], retry_after_cap_s=1)

    def create(ctx: WorkerContext) -> AiFallbackService:
        return AiFallbackService(ctx, monotonic=lambda: now[0])

    async with fleet(settings, create) as (h, service):
        await answer(h, ask())
        during = h.metrics.registry.get_sample_value("eventguard_ai_model_state", {"model": "a"})
        now[0] += 31.0  # the cool-down ends; no request reaches the model
        after = h.metrics.registry.get_sample_value("eventguard_ai_model_state", {"model": "a"})
        page = service.describe()
    assert during == 2
    assert after == 0
    assert page[0]["state"] == "healthy"
