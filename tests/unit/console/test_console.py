"""The console without servers: fakeredis, the in-memory broker, aiohttp's test client."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from common.bus.memory import MemoryBroker
from common.config import Settings
from common.config.sections import ConsoleSettings
from common.config.workers import AiFallbackSettings, AiModelSettings
from common.errors import ConfigError
from common.metrics import Metrics
from common.security.apikeys import ApiKeyStore
from common.security.keys import demo_settings
from common.security.roles import Role
from common.store import Store
from eventguard.console import COOKIE, ROUTES, ConsoleAuth, build_app, console_serving
from eventguard.console.server import _console
from schemas.envelope import new_event
from schemas.ops import AuditRecorded
from workers.quarantine.audit import AuditTrail

STATIC = Path(__file__).resolve().parents[3] / "eventguard" / "console" / "static"
MODEL = AiModelSettings(
    name="m1", provider="openai", endpoint="http://x", context_window=8, max_output=8
)


@dataclass
class Rig:
    """A console app over fakeredis and the in-memory broker."""

    client: TestClient[web.Request, web.Application]
    store: Store
    broker: MemoryBroker
    settings: Settings
    auth: ConsoleAuth


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """The console app, served by aiohttp's test server."""
    settings = Settings(
        security=demo_settings(),
        console=ConsoleSettings(secure_cookie=False, answer_wait_s=0.05),
        ai_fallback=AiFallbackSettings(models=(MODEL,)),
    )
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    broker = MemoryBroker()
    await broker.start()
    console = _console(settings, store=store, broker=broker, metrics=Metrics(CollectorRegistry()))
    await console.tap.start()  # declares the exchanges, as every worker does
    async with TestClient(TestServer(build_app(console))) as client:
        yield Rig(client, store, broker, settings, console.auth)
    await console.tap.stop()
    await broker.close()


async def _sign_in(rig: Rig, role: str) -> str:
    _, key = await ApiKeyStore(rig.store).create(f"k-{role}", role)
    response = await rig.client.post("/signin", data={"credential": key}, allow_redirects=False)
    assert response.status == 303
    page = await (await rig.client.get("/fleet")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_vendored_htmx_matches_its_recorded_checksum_and_licence() -> None:
    """htmx.min.js is the file whose SHA-256 is recorded, and its licence ships beside it."""
    recorded = (STATIC / "htmx.min.js.sha256").read_text().split()[0]
    assert hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest() == recorded
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()


async def test_a_visitor_without_a_session_is_sent_to_sign_in(rig: Rig) -> None:
    """Every GET page redirects to /signin with ?next=; a POST is 401; unknown paths 404."""
    for method, path in ROUTES:
        if method == "GET" and "{" not in path:
            response = await rig.client.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/signin?next=")
    assert (await rig.client.post("/alerts/silences", allow_redirects=False)).status == 401
    assert (await rig.client.get("/nowhere", allow_redirects=False)).status == 404


async def test_sign_in_sets_a_strict_http_only_session_cookie(rig: Rig) -> None:
    """The cookie is random (not the key), HttpOnly and SameSite=Strict; Redis keeps its hash."""
    _, key = await ApiKeyStore(rig.store).create("k", "operator")
    response = await rig.client.post("/signin", data={"credential": key}, allow_redirects=False)
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    token = response.cookies[COOKIE].value
    assert key not in header
    session = await rig.auth.sessions.get(token)
    assert session is not None
    assert session["sub"].startswith("apikey:")
    assert session["role"] == "operator"
    assert not await rig.store.execute(lambda r: r.keys(f"*{token}*"))


async def test_a_bad_credential_is_refused_with_the_form(rig: Rig) -> None:
    """A wrong key or token answers 401 with a reason and no cookie."""
    for credential in ("egk_nope", "not-a-token", ""):
        response = await rig.client.post("/signin", data={"credential": credential})
        assert response.status == 401
        assert COOKIE not in response.cookies
        assert 'class="error"' in await response.text()


async def test_a_viewer_is_refused_every_action(rig: Rig) -> None:
    """A user-role session sees pages but every POST action is 403, even with its CSRF token."""
    csrf = await _sign_in(rig, "user")
    assert (await rig.client.get("/quarantine")).status == 200
    paths = [p for m, p in ROUTES if m == "POST" and p != "/signout"]
    for path in (p.replace("{id}", "x") for p in paths):
        response = await rig.client.post(path, data={"csrf": csrf}, allow_redirects=False)
        assert response.status == 403, path


async def test_an_operator_release_publishes_a_request_with_the_asserted_actor(rig: Rig) -> None:
    """The release is a quarantine.release.requested event whose actor is the signed-in person,
    asserted by the console's user, with no credential in the event."""
    csrf = await _sign_in(rig, "operator")
    key = rig.store.key("quarantine", "{q}") + ":rec:r1"
    await rig.store.execute(lambda r: r.hset(key, mapping={"id": "r1", "status": "quarantined"}))
    response = await rig.client.post(
        "/quarantine/records/r1/release", data={"csrf": csrf, "note": "ok"}, allow_redirects=False
    )
    assert response.status == 303
    sent = [m for m in rig.broker.published if m.type == "quarantine.release.requested"]
    assert len(sent) == 1
    event = json.loads(sent[0].body)
    assert event["data"] == {"record_id": "r1", "note": "ok"}
    assert event["actor"]["role"] == Role.OPERATOR.value
    assert "token" not in event["actor"]
    assert sent[0].user_id == rig.settings.broker_user


async def test_an_operator_discard_publishes_a_discard_request(rig: Rig) -> None:
    """Discard is a quarantine.discard.requested event for the record, with the actor."""
    csrf = await _sign_in(rig, "operator")
    key = rig.store.key("quarantine", "{q}") + ":rec:r2"
    await rig.store.execute(lambda r: r.hset(key, mapping={"id": "r2", "status": "quarantined"}))
    response = await rig.client.post(
        "/quarantine/records/r2/discard", data={"csrf": csrf}, allow_redirects=False
    )
    assert response.headers["Location"] == "/quarantine/records/r2?f=discard"
    [sent] = [m for m in rig.broker.published if m.type == "quarantine.discard.requested"]
    event = json.loads(sent.body)
    assert event["data"]["record_id"] == "r2"
    assert event["actor"]["role"] == "operator"


async def test_only_an_admin_blocks_and_the_block_is_a_quarantine_request(rig: Rig) -> None:
    """An operator's block is 403; an admin's is quarantine.requested (permanent or TTL)."""
    form = {"kind": "producer", "entity_id": "noisy", "reason": "spam", "permanent": "1"}
    csrf = await _sign_in(rig, "operator")
    refused = await rig.client.post("/quarantine/blocks", data={"csrf": csrf, **form})
    assert refused.status == 403
    csrf = await _sign_in(rig, "admin")
    for extra in ({"permanent": "1"}, {"permanent": "", "hours": "2"}):
        response = await rig.client.post(
            "/quarantine/blocks", data={"csrf": csrf, **form, **extra}, allow_redirects=False
        )
        assert response.headers["Location"] == "/quarantine?f=block"
    bad = await rig.client.post(
        "/quarantine/blocks", data={"csrf": csrf, **form, "kind": "message"}, allow_redirects=False
    )
    assert bad.headers["Location"].startswith("/quarantine?error=")
    sent = [json.loads(m.body) for m in rig.broker.published if m.type == "quarantine.requested"]
    expected = [(True, None), (False, 7200)]
    assert [(e["data"]["permanent"], e["data"]["ttl_s"]) for e in sent] == expected
    assert {e["actor"]["role"] for e in sent} == {"admin"}


async def test_posts_without_the_csrf_token_change_nothing(rig: Rig) -> None:
    """No token or a wrong one is 403 and publishes nothing."""
    await _sign_in(rig, "operator")
    for data in ({}, {"csrf": "wrong"}):
        response = await rig.client.post(
            "/quarantine/records/r1/release", data=data, allow_redirects=False
        )
        assert response.status == 403
    assert not [m for m in rig.broker.published if m.type == "quarantine.release.requested"]


async def test_a_session_expires_and_sign_out_revokes_it(rig: Rig) -> None:
    """A session is gone after its TTL (injected clock) and at once after sign-out."""
    now = [1_000.0]
    auth = ConsoleAuth(
        store=rig.store, tokens=None, api_keys=ApiKeyStore(rig.store), session_ttl_s=60,
        secure_cookie=True, now=lambda: now[0],
    )  # fmt: skip
    token = await auth.open_session("ann", Role.USER)
    assert await auth.session(token) is not None
    now[0] += 61
    assert await auth.session(token) is None
    csrf = await _sign_in(rig, "user")
    response = await rig.client.post("/signout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert (await rig.client.get("/fleet", allow_redirects=False)).status == 303


async def test_a_one_time_link_signs_in_once(rig: Rig) -> None:
    """The link's code is redeemed once; a second use is refused."""
    code = await rig.auth.mint_link("demo-admin", Role.ADMIN)
    first = await rig.client.get(f"/signin/link?code={code}", allow_redirects=False)
    assert first.status == 303
    assert COOKIE in first.cookies
    second = await rig.client.get(f"/signin/link?code={code}", allow_redirects=False)
    assert second.status == 401


async def test_a_busy_console_port_is_one_clear_error() -> None:
    """The error names the port and the setting to change."""
    settings = Settings(security=demo_settings())
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    broker = MemoryBroker()
    await broker.start()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        metrics = Metrics(CollectorRegistry())
        with pytest.raises(ConfigError, match=rf"port {port} .*EVENTGUARD_CONSOLE__PORT"):
            async with console_serving(
                settings, store=store, broker=broker, metrics=metrics, host="127.0.0.1", port=port
            ):
                pass
    await broker.close()


def _sent(rig: Rig, event_type: str) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in rig.broker.published if m.type == event_type]


async def test_an_operator_switches_a_model_by_events_and_each_switch_is_audited(rig: Rig) -> None:
    """Disable and enable publish ai.model.*.requested with the operator as actor; unanswered
    (no worker here) the page says requested; each is an ops.audit.recorded of the console."""
    csrf = await _sign_in(rig, "operator")
    page = await (await rig.client.get("/models")).text()
    assert 'action="/models/disable"' in page
    for verb in ("disable", "enable"):
        response = await rig.client.post(
            f"/models/{verb}", data={"csrf": csrf, "model": "m1", "note": "n"},
            allow_redirects=False,
        )  # fmt: skip
        assert response.headers["Location"] == f"/models?f={verb}-requested&m=m1"
        [event] = _sent(rig, f"ai.model.{verb}.requested")
        assert event["data"] == {"model": "m1", "note": "n"}
        assert event["actor"]["role"] == "operator"
        assert event["actor"]["subject"].startswith("apikey:")
    unknown = await rig.client.post("/models/disable", data={"csrf": csrf, "model": "zz"})
    assert unknown.status == 404
    audits = [e["data"] for e in _sent(rig, "ops.audit.recorded")]
    assert [(a["action"], a["auth"], a["worker"], a["status"]) for a in audits] == [
        ("ai.model.disable", "session", "console", 202),
        ("ai.model.enable", "session", "console", 202),
    ]


async def test_a_silence_is_a_request_to_health_monitor_not_a_redis_write(rig: Rig) -> None:
    """Create and expire publish health.silence.* requests; the console writes no silence."""
    csrf = await _sign_in(rig, "operator")
    form = {"csrf": csrf, "matchers": "alertname=Errors, worker=w", "minutes": "30"}
    response = await rig.client.post("/alerts/silences", data=form, allow_redirects=False)
    assert response.headers["Location"] == "/alerts?f=silence-requested"
    [event] = _sent(rig, "health.silence.requested")
    assert event["data"]["matchers"] == {"alertname": "Errors", "worker": "w"}
    assert event["data"]["duration_s"] == 1800
    assert event["actor"]["role"] == "operator"
    key = rig.store.key("health", "silences")
    assert await rig.store.execute(lambda r: r.hlen(key)) == 0
    expire = await rig.client.post(
        "/alerts/silences/abc/expire", data={"csrf": csrf}, allow_redirects=False
    )
    assert expire.headers["Location"] == "/alerts?f=expire-requested"
    assert [e["data"] for e in _sent(rig, "health.silence.expire.requested")] == [
        {"silence_id": "abc"}
    ]


async def test_the_audit_page_shows_the_stored_trail_the_admin_api_serves(rig: Rig) -> None:
    """A record kept by the quarantine worker's trail is on the page; filters narrow it."""
    trail = AuditTrail(rig.store, retention_s=3600, now=time.time)
    for subject, action in (("alice", "quarantine.release"), ("bob", "health.silence")):
        data = AuditRecorded(
            subject=subject, role="operator", auth="token", action=action, method="POST",
            route="/admin/x", outcome="ok", status=200, at=datetime.now(UTC), worker="quarantine",
        )  # fmt: skip
        await trail.add(new_event("ops.audit.recorded", data, source="t"))
    await _sign_in(rig, "user")
    page = await (await rig.client.get("/audit")).text()
    assert "alice (operator, token)" in page
    assert "bob (operator, token)" in page
    only = await (await rig.client.get("/audit?subject=bob")).text()
    assert "alice (operator" not in only
    assert "health.silence" in only
