"""Issue 14, finding 1 reproduced: an admin token put anywhere in a published event never comes
back from a stored record, an admin answer or a broadcast."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.bus.message import OutgoingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.problems import problem_middleware
from common.security.admission import Admission
from common.security.http import PRINCIPAL, Principal
from common.security.keys import demo_settings
from common.security.roles import Role
from common.security.tokens import TokenService
from common.testing import Harness, run_workers
from common.validation import endpoint
from schemas.envelope import new_event
from schemas.quarantine import QuarantineReleaseRequested, QuarantineRequested
from tests.unit.quarantine.conftest import Clock, factories, settings, until
from workers.quarantine import QuarantineService

Fleet = tuple[Harness, QuarantineService, TestClient[Any, Any], str]


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """The quarantine worker behind the fleet's admission, its admin routes as an operator,
    and an admin token minted now."""
    holder: dict[str, Any] = {}
    config = settings().model_copy(update={"security": demo_settings()})
    admin_token = TokenService(config.security, store=None).issue("root", "admin")
    admission = Admission.from_settings(config)
    async with run_workers(factories(Clock(), holder), settings=config, authorize=admission) as env:
        service: QuarantineService = holder["quarantine"]

        @web.middleware
        async def as_operator(request: web.Request, handler: Any) -> web.StreamResponse:
            request[PRINCIPAL] = Principal("olga", Role.OPERATOR, "token")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[problem_middleware, as_operator])
        for route in service.admin_routes():
            app.router.add_route(route.method, "/admin/" + route.path, endpoint(route))
        async with TestClient(TestServer(app)) as client:
            yield env, service, client, admin_token


def _message(
    body: bytes, event_type: str, headers: dict[str, Any] | None = None
) -> OutgoingMessage:
    return OutgoingMessage(
        body=body,
        routing_key=event_type,
        exchange=EVENTS_EXCHANGE,
        type=event_type,
        user_id="operator",
        headers=headers or {},
    )


async def _redis_dump(env: Harness) -> bytes:
    """Every key and every value in Redis, whatever its type, concatenated."""
    client: Any = env.store.client
    out: list[bytes] = []
    async for key in client.scan_iter(count=10_000):
        out.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            out.append(await client.get(key))
        elif kind == "hash":
            for field, value in (await client.hgetall(key)).items():
                out += [field, value]
        elif kind == "list":
            out += await client.lrange(key, 0, -1)
        elif kind == "set":
            out += list(await client.smembers(key))
        elif kind == "zset":
            out += await client.zrange(key, 0, -1)
        elif kind == "stream":
            for _id, fields in await client.xrange(key):
                for field, value in fields.items():
                    out += [field, value]
        elif kind != "none":  # "none": deleted between SCAN and TYPE (a claim, a lock)
            raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
    return b"\n".join(out)


async def test_an_admin_token_in_an_event_never_comes_back(fleet: Fleet) -> None:
    """actor.token, the payload, a header and a non-JSON body: nothing stored or answered holds
    the token or its signature, and the refusals are on record (nothing lost)."""
    env, service, client, token = fleet
    signature = token.rsplit(".", 1)[1]
    request = new_event(
        "quarantine.requested",
        QuarantineRequested(
            kind="producer", entity_id="p1", reason=f"see {token}", requested_by="x", ttl_s=60
        ),
        source="attacker",
    )
    with_token = request.model_dump(mode="json")
    with_token["actor"] = {"subject": "root", "role": "admin", "token": token}
    release = new_event(
        "quarantine.release.requested", QuarantineReleaseRequested(record_id="r1"), source="a"
    ).model_dump(mode="json")
    release["data"]["note"] = f"password={token}"
    release["actor"] = {"subject": "olga", "role": "user"}  # below the type's rule: refused
    await env.broker.publish(
        _message(
            json.dumps(with_token).encode(),
            "quarantine.requested",
            {"Authorization": f"Bearer {token}", "x-api-key": token},
        )
    )
    await env.broker.publish(
        _message(
            request.model_dump_json().encode(),
            "quarantine.requested",
            {"authorization": f"Bearer {token}", "x-note": f"cookie={token}"},
        )
    )
    await env.broker.publish(_message(b"not json " + token.encode(), "quarantine.requested"))
    await env.broker.publish(_message(json.dumps(release).encode(), "quarantine.release.requested"))
    await until(lambda: len(env.emitted("quarantine.entry.added")) >= 4)
    await env.settle()

    dump = await _redis_dump(env)
    assert token.encode() not in dump
    assert signature.encode() not in dump
    listing = await client.get("/admin/quarantine/records", params={"limit": "50"})
    rows = (await listing.json())["records"]
    assert {r["reason"] for r in rows} >= {"schema_violation", "invalid_json", "unauthorized"}
    for row in rows:
        answer = await client.get(f"/admin/quarantine/records/{row['id']}")
        text = await answer.text()
        assert signature not in text
        if row["kind"] == "message":
            record = json.loads(text)
            assert record["body_sha256"]
            assert int(record["body_size"]) > 0
    assert signature not in (await (await client.get("/admin/quarantine/blacklist")).text())
    for event in env.emitted("quarantine.entry.added"):
        assert signature not in event.model_dump_json()
    assert await service.is_blocked("producer", "p1")  # the valid request was acted on
