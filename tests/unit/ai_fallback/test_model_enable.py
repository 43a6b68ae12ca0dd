"""``POST /admin/ai/models/{model}/enable`` lifts a model's auth disable (an audited admin call)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.problems import problem_middleware
from common.validation import endpoint
from tests.unit.ai_fallback.helpers import ai_settings, answer, ask, fleet, model
from workers.ai_fallback.simulator import ProviderSimulator, Step


async def test_enable_route_lifts_an_auth_disable(sim: ProviderSimulator) -> None:
    """A model disabled by refused credentials is healthy again after the enable route; an
    unknown model is a 404 problem."""
    sim.set_default("a", Step("auth"))
    async with fleet(ai_settings([model(sim, "a"), model(sim, "b", priority=200)])) as (h, s):
        await answer(h, ask())
        assert s.health.health["a"].disabled
        app = web.Application(middlewares=[problem_middleware])
        for route in s.admin_routes():
            app.router.add_route(route.method, "/admin/" + route.path, endpoint(route))
        async with TestClient(TestServer(app)) as client:
            lifted = await client.post("/admin/ai/models/a/enable")
            assert (lifted.status, await lifted.json()) == (200, {"model": "a", "lifted": True})
            unknown = await client.post("/admin/ai/models/zz/enable")
            assert unknown.status == 404
            assert (await unknown.json())["code"] == "unknown_model"
        rows = {row["name"]: row for row in s.describe()}
        assert rows["a"]["state"] != "disabled"
        assert h.emitted("health.alert.resolved")
