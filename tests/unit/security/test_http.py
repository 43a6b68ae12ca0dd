"""The ops server: public probes, authenticated admin routes, default deny, the event stream."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import fakeredis
import jwt
import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from common.config import Settings
from common.metrics import Metrics
from common.ops import EventStream, build_app
from common.problems import problem_middleware
from common.reliability.guard import Guards
from common.security.apikeys import ApiKeyStore
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.security.roles import Role
from common.security.tokens import TokenService
from common.service import AdminRoute, BaseService
from common.store import Store
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
    """Public routes match exactly, never by suffix: a path nothing serves is 404."""
    client, *_ = env
    assert (await client.get("/admin/adm/things/x/healthz")).status == 404
    assert (await client.get("/admin/healthz")).status == 404


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


async def test_unknown_admin_route_is_404_for_everyone(env: Env) -> None:
    """A path no route serves is a 404 problem, with or without credentials."""
    client, tokens, *_ = env
    for headers in (_bearer(tokens, "admin"), {}):
        response = await client.get("/admin/nothing-here", headers=headers)
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        assert (await response.json())["code"] == "not_found"


async def test_a_route_without_a_rule_is_denied_even_for_admin(env: Env) -> None:
    """A mounted route with no access rule is refused (default deny), whatever the role."""
    _client, tokens, fleet, stream = env
    auth = AdminAuth(tokens=tokens, api_keys=None, metrics=fleet.metrics)
    app = build_app(fleet.runtime, auth=auth, stream=stream)

    async def hidden(_request: web.Request) -> web.Response:
        return web.json_response({"leaked": True})

    app.router.add_get("/admin/hidden", hidden)
    async with TestClient(TestServer(app)) as other:
        response = await other.get("/admin/hidden", headers=_bearer(tokens, "admin"))
        assert response.status == 403
        assert (await response.json())["code"] == "forbidden"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"Authorization": "Bearer garbage"}, "malformed_token"),
        ({"Authorization": "Bearer"}, "malformed_authorization"),
        ({"Authorization": "Bearer "}, "malformed_authorization"),
        ({"Authorization": "Bearer a b"}, "malformed_authorization"),
        ({"Authorization": "Token abc"}, "malformed_authorization"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "malformed_authorization"),
        ({"Authorization": "bearer eyJ.eyJ.sig"}, "malformed_token"),
        ({"Authorization": ""}, "malformed_authorization"),
        ({"Authorization": "Bearer " + "x" * 7_000}, "token_too_large"),
        ({"X-API-Key": "egk_abcdef123456_wrongsecret"}, "invalid_api_key"),
        ({"X-API-Key": "sys_admin"}, "invalid_api_key"),
        ({"X-API-Key": ""}, "invalid_api_key"),
    ],
)
async def test_bad_credentials_are_refused_not_downgraded(
    env: Env, header: dict[str, str], reason: str
) -> None:
    """Present-but-invalid credentials get a generic 401 (never the guest role); the precise
    reason goes to the log line only."""
    client, *_ = env
    with capture_logs() as logs:
        response = await client.get("/admin/adm/things/1", headers=header)
    assert response.status == 401
    problem = await response.json()
    assert (problem["code"], problem["detail"]) == ("invalid_token", "invalid_token")
    assert reason not in json.dumps(problem)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert [e["reason"] for e in logs if e["event"] == "access.denied"] == [reason]


async def test_header_past_the_server_limit_is_refused(env: Env) -> None:
    """A token past aiohttp's 8 KiB header limit never reaches a handler."""
    client, *_ = env
    response = await client.get(
        "/admin/adm/things/1", headers={"Authorization": "Bearer " + "x" * 9_000}
    )
    assert response.status in {400, 401}
    assert (await client.get("/healthz")).status == 200  # and the server keeps working


@pytest.mark.parametrize("kind", ["refresh", "expired", "revoked", "wrong_audience", "forged"])
async def test_tokens_that_fail_verification_get_401(env: Env, kind: str) -> None:
    """Refresh-as-access, expired, revoked, foreign-audience and forged tokens are refused."""
    client, tokens, *_ = env
    if kind == "refresh":
        token = tokens.issue("op", "admin", kind="refresh")
    elif kind == "expired":
        token = _reissue_expired(tokens)
    elif kind == "revoked":
        token = tokens.issue("op", "admin")
        await tokens.revoke_token(token)
    elif kind == "wrong_audience":
        token = _with_audience(tokens, "another-service")
    else:
        token = TokenService(demo_settings(), store=None).issue("op", "admin")
    response = await client.get("/admin/adm/things/1", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401


def _reissue_expired(tokens: TokenService) -> str:
    """A token from the same keys, issued two hours ago for one hour."""
    old = TokenService(tokens.settings, store=None, now=lambda: time.time() - 7_200)
    return old.issue("op", "admin", ttl_s=3_600)


def _with_audience(tokens: TokenService, audience: str) -> str:
    """A token from the same keys for another audience."""
    settings = tokens.settings.model_copy(update={"audience": audience})
    return TokenService(settings, store=None).issue("op", "admin")


async def test_both_credentials_at_once_are_refused(env: Env) -> None:
    """A bearer token and an API key together are ambiguous and refused."""
    client, tokens, fleet, _ = env
    _, key = await ApiKeyStore(fleet.store).create("svc", Role.ADMIN)
    headers = {**_bearer(tokens, "admin"), "X-API-Key": key}
    with capture_logs() as logs:
        response = await client.get("/admin/adm/things/1", headers=headers)
    assert response.status == 401
    assert (await response.json())["code"] == "invalid_token"
    assert logs[-1]["reason"] == "ambiguous_credentials"


async def test_unknown_role_in_a_valid_signature_is_refused(env: Env) -> None:
    """A token signed with the real key but naming an unknown role is not promoted."""
    client, tokens, *_ = env
    key = tokens.keys.signing
    now = int(time.time())
    claims = {
        "sub": "eve",
        "role": "superuser",
        "type": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "j",
        "aud": "eventguard",
        "iss": "eventguard",
    }
    token = jwt.encode(claims, key.key, algorithm=key.algorithm, headers={"kid": key.kid})
    with capture_logs() as logs:
        response = await client.get(
            "/admin/adm/things/1", headers={"Authorization": f"Bearer {token}"}
        )
    assert (response.status, (await response.json())["code"]) == (401, "invalid_token")
    assert logs[-1]["reason"] == "unknown_role"


async def test_redis_down_fails_closed_with_503() -> None:
    """When the API-key store cannot answer, the request is refused (503), never let through."""
    server = fakeredis.FakeServer()
    guards = Guards(overrides={"redis": {"max_attempts": 1}})
    store = Store(fakeredis.FakeAsyncRedis(server=server), prefix="x:", guard=guards.guard("redis"))
    auth = AdminAuth(
        tokens=TokenService(demo_settings(), store=store),
        api_keys=ApiKeyStore(store),
        metrics=Metrics(CollectorRegistry()),
    )
    auth.allow("GET", "/admin/x", "operator")

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[problem_middleware, auth.middleware])
    app.router.add_get("/admin/x", ok)
    assert auth.tokens is not None
    token = auth.tokens.issue("op", "admin")
    server.connected = False
    async with TestClient(TestServer(app)) as client:
        for headers in (
            {"Authorization": f"Bearer {token}"},
            {"X-API-Key": "egk_" + "a" * 12 + "_" + "b" * 43},
        ):
            response = await client.get("/admin/x", headers=headers)
            assert response.status == 503
            assert (await response.json())["code"] == "auth_unavailable"


async def test_api_key_with_right_prefix_and_wrong_secret(env: Env) -> None:
    """A real key id with a wrong secret is refused; the real key passes."""
    client, _, fleet, _ = env
    key, secret = await ApiKeyStore(fleet.store).create("svc", Role.OPERATOR)
    forged = f"egk_{key.key_id}_{'A' * 43}"
    assert (await client.get("/admin/adm/things/1", headers={"X-API-Key": forged})).status == 401
    assert (await client.get("/admin/adm/things/1", headers={"X-API-Key": secret})).status == 200


async def test_denials_are_logged_without_the_credential(env: Env) -> None:
    """Each denial is logged and counted; no token or key appears in the log."""
    client, tokens, fleet, _ = env
    token = tokens.issue("eve", "user")
    _, key = await ApiKeyStore(fleet.store).create("svc", Role.SERVICE)
    wrong_key = key[:-4] + "AAAA"
    with capture_logs() as logs:
        await client.get("/admin/adm/things/1", headers={"Authorization": f"Bearer {token}"})
        await client.get("/admin/adm/things/1", headers={"Authorization": f"Bearer {token}x"})
        await client.get("/admin/adm/things/1", headers={"X-API-Key": wrong_key})
        await client.get("/admin/adm/things/1", headers={"X-API-Key": key})
        await client.get(f"/admin/{token}/healthz")
    denied = [entry for entry in logs if entry["event"] == "access.denied"]
    assert len(denied) == 4  # the token pasted into a path is a 404: no route, nothing logged
    text = json.dumps(logs, default=str)
    for secret in (token, wrong_key, key, key.rsplit("_", 1)[1]):
        assert secret not in text
    assert "eyJ" not in text
    count = fleet.metrics.registry.get_sample_value(
        "eventguard_access_denied_total", {"surface": "http", "reason": "insufficient_role"}
    )
    assert count == 2.0  # the user token and the service key


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


async def test_a_browser_offers_its_token_as_a_websocket_subprotocol(env: Env) -> None:
    """Browsers cannot set headers on a WebSocket: the token rides in an offered subprotocol,
    the server answers with eventguard.v1 (never the token), and a bad or doubled one is
    refused like a bad header."""
    client, tokens, _fleet, _stream = env
    token = tokens.issue("browser", "operator")
    offered = ("eventguard.v1", f"eventguard.bearer.{token}")
    async with client.ws_connect("/admin/stream", protocols=offered) as ws:
        assert ws.protocol == "eventguard.v1"
    user = ("eventguard.v1", f"eventguard.bearer.{tokens.issue('u', 'user')}")
    with pytest.raises(WSServerHandshakeError) as low:
        await client.ws_connect("/admin/stream", protocols=user)
    assert low.value.status == 403
    with pytest.raises(WSServerHandshakeError) as bad:
        await client.ws_connect("/admin/stream", protocols=("eventguard.bearer.not-a-token",))
    assert bad.value.status == 401
    with pytest.raises(WSServerHandshakeError) as twice:
        await client.ws_connect(
            "/admin/stream", protocols=offered, headers=_bearer(tokens, "operator")
        )
    assert twice.value.status == 401
    plain = await client.get("/admin/stream", headers={"Sec-WebSocket-Protocol": offered[1]})
    assert plain.status == 401  # only a WebSocket upgrade may carry it there


async def _receive(ws: ClientWebSocketResponse) -> str | None:
    """The next text frame, or None when none comes within 0.2 s."""
    try:
        message = await ws.receive(timeout=0.2)
    except TimeoutError:
        return None
    return message.data if message.type is WSMsgType.TEXT else None
