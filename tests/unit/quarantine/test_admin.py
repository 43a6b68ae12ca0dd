"""The quarantine admin routes (mounted bare: authentication is the ops server's job)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.bus import headers as h
from common.bus.message import OutgoingMessage
from common.bus.topology import DEAD_LETTER_EXCHANGE
from common.problems import problem_middleware
from common.security.http import PRINCIPAL, Principal
from common.security.roles import Role
from common.testing import Harness, run_workers
from common.validation import endpoint
from tests.unit.quarantine.conftest import Clock, factories, settings, until
from workers.quarantine import QuarantineService, admin


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[Harness, QuarantineService, TestClient[Any, Any]]]:
    """The quarantine worker with its admin routes on a test server."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        service: QuarantineService = holder["quarantine"]

        @web.middleware
        async def as_alice(request: web.Request, handler: Any) -> web.StreamResponse:
            request[PRINCIPAL] = Principal("alice", Role.OPERATOR, "token")
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[problem_middleware, as_alice])
        for route in service.admin_routes():
            app.router.add_route(route.method, "/admin/" + route.path, endpoint(route))
        async with TestClient(TestServer(app)) as client:
            yield env, service, client


async def _dead(env: Harness, n: int, reason: str = "invalid_json") -> None:
    for i in range(n):
        await env.broker.publish(
            OutgoingMessage(
                body=f"bad {reason} {i}".encode(),
                routing_key="marketplace.strategy.revoked",
                exchange=DEAD_LETTER_EXCHANGE,
                headers={
                    h.REASON: reason,
                    h.ORIGINAL_ROUTING_KEY: "marketplace.strategy.revoked",
                    h.ORIGINAL_EXCHANGE: "eventguard.events",
                },
            )
        )


async def test_list_filters_and_pages(
    fleet: tuple[Harness, QuarantineService, TestClient[Any, Any]],
) -> None:
    """Filters by reason and status, pages newest first, and reports the total."""
    env, _, client = fleet
    await _dead(env, 5, "invalid_json")
    await _dead(env, 3, "max_attempts")
    await until(lambda: len(env.emitted("quarantine.entry.added")) == 8)
    resp = await client.get("/admin/quarantine/records?reason=invalid_json&limit=2&offset=1")
    body = await resp.json()
    assert resp.status == 200
    assert body["total"] == 5
    assert len(body["records"]) == 2
    assert {r["reason"] for r in body["records"]} == {"invalid_json"}
    resp = await client.get("/admin/quarantine/records?status=released")
    assert (await resp.json())["total"] == 0
    resp = await client.get("/admin/quarantine/summary")
    classes = (await resp.json())["classes"]
    assert set(classes) == {"permanent", "transient"}


async def test_bad_filters_are_clear_errors(
    fleet: tuple[Harness, QuarantineService, TestClient[Any, Any]],
) -> None:
    """An unknown status or a bad limit is a 400 naming the problem."""
    _, _, client = fleet
    resp = await client.get("/admin/quarantine/records?status=nope")
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["code"] == "invalid_query"
    assert "unknown status" in problem["errors"][0]["msg"]
    resp = await client.get("/admin/quarantine/records?limit=0")
    assert resp.status == 400


async def test_show_release_discard_answers(
    fleet: tuple[Harness, QuarantineService, TestClient[Any, Any]],
) -> None:
    """Show returns the body; release re-publishes; a second release and a discard are 409."""
    env, _, client = fleet
    await _dead(env, 1)
    added = await env.wait_for("quarantine.entry.added")
    rid = added.data.record_id
    shown = await (await client.get(f"/admin/quarantine/records/{rid}")).json()
    assert shown["body_text"] == "bad invalid_json 0"
    assert shown["headers"][h.REASON] == "invalid_json"
    resp = await client.post(f"/admin/quarantine/records/{rid}/release", json={"note": "ok"})
    assert resp.status == 200
    assert (await resp.json())["event"]["released_by"] == "alice"
    resp = await client.post(f"/admin/quarantine/records/{rid}/release")
    assert resp.status == 409
    assert (await resp.json())["code"] == "already_released"
    resp = await client.post(f"/admin/quarantine/records/{rid}/discard")
    assert resp.status == 409
    resp = await client.get("/admin/quarantine/records/unknown")
    assert resp.status == 404
    resp = await client.post("/admin/quarantine/records/unknown/release")
    assert resp.status == 404


async def test_extend_and_block_entity(
    fleet: tuple[Harness, QuarantineService, TestClient[Any, Any]],
) -> None:
    """Extend sets a new expiry; block makes it permanent; a message has no TTL (409)."""
    env, service, client = fleet
    outcome, _ = await service._block(
        record_id="ent1",
        kind="ai_model",
        entity_id="gpt-x",
        reason="requested",
        detail="d",
        severity="warning",
        evidence={},
        requested_by="t",
        ttl_s=10,
        now=service.now(),
        causation=None,
    )
    assert outcome == "created"
    resp = await client.post("/admin/quarantine/records/ent1/extend", json={"ttl_s": 3600})
    assert resp.status == 200
    record = await service.repo.get("ent1")
    assert record is not None
    assert float(record["expires_at"]) == service.now() + 3600
    resp = await client.post("/admin/quarantine/records/ent1/extend", json={"ttl_s": "x"})
    assert resp.status == 400
    resp = await client.post("/admin/quarantine/records/ent1/block")
    assert (await resp.json())["permanent"] is True
    assert await service.repo.due_expiries(service.now() + 10**6) == []
    await _dead(env, 1)
    added = await env.wait_for("quarantine.entry.added", lambda e: e.data.kind == "message")
    resp = await client.post(
        f"/admin/quarantine/records/{added.data.record_id}/extend", json={"ttl_s": 5}
    )
    assert resp.status == 409


def test_permanent_block_route_needs_admin() -> None:
    """Only the block route needs admin; everything else operator."""
    service = QuarantineService.__new__(QuarantineService)
    service.settings = settings().quarantine
    roles = {(r.method, r.path): r.min_role for r in admin.routes(service)}
    assert roles.pop(("POST", "quarantine/records/{id}/block")) == "admin"
    assert set(roles.values()) == {"operator"}
