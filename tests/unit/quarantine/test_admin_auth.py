"""The quarantine admin routes behind the real ops server and its access rules."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from common.ops import EventStream, build_app
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.security.tokens import TokenService
from common.testing import run_workers
from tests.unit.quarantine.conftest import Clock, factories, settings


async def test_read_release_operator_block_admin() -> None:
    """Guests are refused, an operator lists and releases, only an admin blocks for good."""
    holder: dict[str, Any] = {}
    config = settings().model_copy(update={"security": demo_settings()})
    async with run_workers(factories(Clock(), holder), settings=config) as env:
        auth = AdminAuth.from_settings(config, store=env.store, metrics=env.metrics)
        app = build_app(env.runtime, auth=auth, stream=EventStream())
        tokens = TokenService(config.security, store=env.store)
        operator = {"Authorization": "Bearer " + tokens.issue("olga", "operator")}
        admin = {"Authorization": "Bearer " + tokens.issue("ada", "admin")}
        user = {"Authorization": "Bearer " + tokens.issue("uma", "user")}
        q = holder["quarantine"]
        await q._block(
            record_id="ent1",
            kind="ai_model",
            entity_id="m",
            reason="requested",
            detail="d",
            severity="warning",
            evidence={},
            requested_by="t",
            ttl_s=60,
            now=q.now(),
            causation=None,
        )
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/admin/quarantine/records")).status == 401
            assert (await client.get("/admin/quarantine/records", headers=user)).status == 403
            listed = await client.get("/admin/quarantine/records", headers=operator)
            assert listed.status == 200
            assert (await listed.json())["total"] == 1
            block = "/admin/quarantine/records/ent1/block"
            assert (await client.post(block, headers=operator)).status == 403
            blocked = await client.post(block, headers=admin)
            assert blocked.status == 200
            assert (await blocked.json())["permanent"] is True
            released = await client.post("/admin/quarantine/records/ent1/release", headers=operator)
            assert (await released.json())["event"]["released_by"] == "olga"
