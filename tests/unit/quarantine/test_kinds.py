"""Entity kinds are one closed set: the schema refuses what the handler would refuse."""

from __future__ import annotations

import json
from typing import Any

from common.bus.message import OutgoingMessage
from common.bus.topology import EVENTS_EXCHANGE
from common.quarantine_view import ENTITY_KINDS as VIEW_KINDS
from common.testing import run_workers
from schemas.envelope import new_event
from schemas.quarantine import ENTITY_KINDS, QuarantineRequested
from tests.unit.quarantine.conftest import Clock, factories, settings, until


async def test_a_request_to_quarantine_a_message_breaks_the_schema() -> None:
    """kind "message" is refused by validation (schema_violation), not by the handler."""
    holder: dict[str, Any] = {}
    async with run_workers(factories(Clock(), holder), settings=settings()) as env:
        data = QuarantineRequested(kind="producer", entity_id="p", reason="r", requested_by="t")
        body = json.loads(new_event("quarantine.requested", data, source="t").model_dump_json())
        body["data"]["kind"] = "message"
        await env.broker.publish(
            OutgoingMessage(
                body=json.dumps(body).encode(),
                routing_key="quarantine.requested",
                exchange=EVENTS_EXCHANGE,
                type="quarantine.requested",
                user_id="test",
            )
        )
        added = env.metrics.quarantine.added.labels("message", "schema_violation")
        await until(lambda: added._value.get() == 1)
        repo = holder["quarantine"].repo
        _, rows = await repo.search(kind="message", reason="schema_violation")
        record = await repo.get(rows[0]["id"])
        assert record is not None
        assert record["exception"] == "ValidationError"  # not "Reject": the schema said no
        assert "data.kind" in record["detail"]


def test_the_view_and_the_schema_share_one_set_of_kinds() -> None:
    """common.quarantine_view uses schemas.quarantine's entity kinds, not a copy."""
    assert VIEW_KINDS is ENTITY_KINDS
