"""The ops server: public probes, authenticated admin routes, default deny, the event stream."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from common.config import Settings
from common.ops import EventStream, build_app
from common.security import AdminAuth, ApiKeyStore, Role, TokenService, demo_settings
from common.service import AdminRoute, BaseService
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.envelope import new_event
from schemas.quarantine import QuarantineRequested


class WithAdmin(BaseService):
    """A worker with one operator route and one admin route."""

    name = "adm"

    def admin_routes(self) -> list[AdminRoute]:
        async def read(_request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        return [
            AdminRoute("GET", "adm/things/{thing}", read, min_role="operator"),
            AdminRoute("POST", "adm/block", read, min_role="admin"),
        ]


Env = tuple[TestClient[web.Request, web.Application], TokenService, Harness, EventStream]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """An ops server over an in-memory fleet with throwaway keys."""
    settings = Settings(runtime=fast_runtime_settings(), security=demo_settings())
    async with run_workers([("adm", WithAdmin)], settings=settings) as fleet:
        auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
        stream = EventStream()
        app = build_app(fleet.runtime, auth=auth, stream=stream)
        tokens = auth.tokens
        assert tokens is not None
        async with TestClient(TestServer(app)) as client:
            yield client, tokens, fleet, stream


def _bearer(tokens: TokenService, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue('op', role)}"}


async def test_probes_are_public(env: Env) -> None:
    """/healthz, /readyz and /metrics answer without credentials."""
    client, *_ = env
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"broker": True, "consumers": True, "redis": True}
    metrics = await client.get("/metrics")
    assert "eventguard_messages_in_flight" in await metrics.text()


async def test_path_that_ends_in_healthz_is_not_public(env: Env) -> None:
    """Public routes match exactly, never by suffix."""
    client, *_ = env
    assert (await client.get("/admin/adm/things/x/healthz")).status == 401
    assert (await client.get("/admin/healthz")).status == 401


async def test_admin_route_needs_a_role(env: Env) -> None:
    """A guest is refused, a user is forbidden, an operator passes, admin-only stays admin."""
    client, tokens, *_ = env
    assert (await client.get("/admin/adm/things/1")).status == 401
    assert (await client.get("/admin/adm/things/1", headers=_bearer(tokens, "user"))).status == 403
    assert (
        await client.get("/admin/adm/things/1", headers=_bearer(tokens, "operator"))
    ).status == 200
    assert (
        await client.post("/admin/adm/block", headers=_bearer(tokens, "operator"))
    ).status == 403
    assert (await client.post("/admin/adm/block", headers=_bearer(tokens, "admin"))).status == 200


async def test_unknown_admin_route_is_denied_even_for_admin(env: Env) -> None:
    """No rule means deny, whatever the role."""
    client, tokens, *_ = env
    response = await client.get("/admin/nothing-here", headers=_bearer(tokens, "admin"))
    assert response.status == 403
    assert (await response.json())["reason"] == "no_rule"


@pytest.mark.parametrize(
    "header",
    [
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 9_000},
        {"X-API-Key": "egk_abcdef123456_wrongsecret"},
        {"X-API-Key": "sys_admin"},
    ],
)
async def test_bad_credentials_are_refused_not_downgraded(env: Env, header: dict[str, str]) -> None:
    """Present-but-invalid credentials get 401, never the guest role."""
    client, *_ = env
    response = await client.get("/admin/adm/things/1", headers=header)
    # aiohttp itself answers 400 for a header past its 8 KiB line limit.
    assert response.status in ({400, 401} if len(str(header)) > 8_000 else {401})


async def test_api_key_with_right_prefix_and_wrong_secret(env: Env) -> None:
    """A real key id with a wrong secret is refused; the real key passes."""
    client, _, fleet, _ = env
    key, secret = await ApiKeyStore(fleet.store).create("svc", Role.OPERATOR)
    forged = f"egk_{key.key_id}_{'A' * 43}"
    assert (await client.get("/admin/adm/things/1", headers={"X-API-Key": forged})).status == 401
    assert (await client.get("/admin/adm/things/1", headers={"X-API-Key": secret})).status == 200


async def test_denials_are_logged_without_the_credential(env: Env) -> None:
    """Each denial is logged and counted; the token never appears in the log."""
    client, tokens, fleet, _ = env
    token = tokens.issue("eve", "user")
    with capture_logs() as logs:
        await client.get("/admin/adm/things/1", headers={"Authorization": f"Bearer {token}"})
        await client.get("/admin/adm/things/1", headers={"Authorization": f"Bearer {token}x"})
    denied = [entry for entry in logs if entry["event"] == "access.denied"]
    assert len(denied) == 2
    assert token not in json.dumps(logs, default=str)
    count = fleet.metrics.registry.get_sample_value(
        "eventguard_access_denied_total", {"surface": "http", "reason": "insufficient_role"}
    )
    assert count == 1.0


async def test_event_stream_needs_operator_and_streams_events(env: Env) -> None:
    """/admin/stream refuses a guest and streams published events to an operator."""
    client, tokens, fleet, stream = env
    refused = await client.get("/admin/stream")
    assert refused.status == 401
    async with client.ws_connect("/admin/stream", headers=_bearer(tokens, "operator")) as ws:
        data = QuarantineRequested(kind="producer", entity_id="p", reason="r", requested_by="t")
        event = new_event("quarantine.requested", data, source="t")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stream.publish(event)
            message = await _receive(ws)
            if message is not None:
                assert json.loads(message)["id"] == event.id
                break
        else:
            pytest.fail("no event arrived on the stream")
    assert fleet.runtime.workers["adm"].paused is False


async def _receive(ws: ClientWebSocketResponse) -> str | None:
    """The next text frame, or None when none comes within 0.2 s."""
    try:
        message = await ws.receive(timeout=0.2)
    except TimeoutError:
        return None
    return message.data if message.type is WSMsgType.TEXT else None
