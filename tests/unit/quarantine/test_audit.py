"""Finding 8: every state-changing admin call is audited (a JSON log line and an
``ops.audit.recorded`` event) and the quarantine worker keeps and serves the trail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import fakeredis
import pytest
from structlog.testing import capture_logs

from common.store import Store
from schemas.envelope import new_event
from schemas.ops import AuditRecorded
from tests.unit.security._ops import Ops, ops_server
from workers.quarantine.audit import AuditQuery, AuditTrail


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    """Quarantine and health_monitor behind one ops server."""
    async with ops_server(workers=("quarantine", "health_monitor")) as server:
        yield server


async def _trail(ops: Ops, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(5):
        while True:
            response = await ops.client.get("/admin/audit", headers=ops.bearer("operator"))
            assert response.status == 200
            records: list[dict[str, Any]] = (await response.json())["records"]
            if len(records) >= count:
                return records
            await asyncio.sleep(0.01)


async def test_state_changing_calls_are_logged_published_and_kept(ops: Ops) -> None:
    """A silence (ok), a release of a missing record (refused) and a token revocation are each
    an audit.recorded line, an ops.audit.recorded event from the serving worker, and a record
    served at /admin/audit, newest first."""
    with capture_logs() as logs:
        silence = await ops.client.post(
            "/admin/health/silences",
            json={"matchers": {"alertname": "x"}, "duration_s": 60},
            headers=ops.bearer("operator", sub="alice"),
        )
        assert silence.status == 201
        missing = await ops.client.post(
            "/admin/quarantine/records/nope/release",
            json={"note": "try"},
            headers=ops.bearer("operator", sub="alice"),
        )
        assert missing.status == 404
        revoke = await ops.client.post(
            "/admin/tokens/revoke", json={"sub": "mallory"}, headers=ops.bearer("admin", sub="bob")
        )
        assert revoke.status == 200
    lines = [e for e in logs if e["event"] == "audit.recorded"]
    assert [(e["subject"], e["action"], e["outcome"]) for e in lines] == [
        ("alice", "health.silence", "ok"),
        ("alice", "quarantine.release", "refused"),
        ("bob", "token.revoke", "ok"),
    ]
    events = ops.fleet.emitted("ops.audit.recorded")
    assert [(e.source, e.data.worker) for e in events][:2] == [
        ("health_monitor", "health_monitor"),
        ("quarantine", "quarantine"),
    ]
    records = await _trail(ops, 3)
    newest = records[0]
    assert (newest["subject"], newest["role"], newest["action"]) == ("bob", "admin", "token.revoke")
    assert records[1]["target"] == {"id": "nope"}
    assert records[1]["status"] == 404
    assert "note" not in str(records)  # no body in the trail
    assert "try" not in str(records[1])


async def test_reads_are_not_audited_and_the_trail_needs_operator(ops: Ops) -> None:
    """GET calls leave no audit record; a guest and a user may not read the trail."""
    await ops.client.get("/admin/quarantine/records", headers=ops.bearer("operator"))
    assert ops.fleet.emitted("ops.audit.recorded") == []
    assert (await ops.client.get("/admin/audit")).status == 401
    assert (await ops.client.get("/admin/audit", headers=ops.bearer("user"))).status == 403


def _event(at: float, subject: str) -> Any:
    record = AuditRecorded(
        subject=subject,
        role="operator",
        auth="token",
        action="quarantine.release",
        method="POST",
        route="/admin/quarantine/records/{id}/release",
        target={"id": "r1"},
        outcome="ok",
        status=200,
        at=datetime.fromtimestamp(at, tz=UTC),
        worker="quarantine",
    )
    return new_event("ops.audit.recorded", record, source="quarantine")


async def test_retention_drops_old_records_and_redelivery_adds_nothing() -> None:
    """Records older than the retention are trimmed on write; the same event twice is one."""
    now = [1_800_000_000.0]
    trail = AuditTrail(
        Store(fakeredis.FakeAsyncRedis(), prefix="t:"), retention_s=3600, now=lambda: now[0]
    )
    old = _event(now[0] - 7200, "old")
    fresh = _event(now[0] - 60, "fresh")
    await trail.add(old)
    await trail.add(fresh)
    await trail.add(fresh)
    found = await trail.query(AuditQuery())
    assert [r.subject for r in found] == ["fresh"]
    assert (await trail.query(AuditQuery(subject="nobody"))) == []
