"""The AsyncAPI document: servers from settings, producer rules, replies, and a clean parse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from common.bus.headers import DEAD_REASONS
from common.config import Settings
from eventguard.contract import contract_from
from schemas.export import asyncapi_document, write_all
from schemas.registry import REPLIES
from tests.unit.inert import inert_services
from workers.registry import consumed_types

ROOT = Path(__file__).resolve().parents[3]
PARSER = ROOT / ".cache" / "asyncapi" / "node_modules" / "@asyncapi" / "parser"
CONSUMERS = consumed_types()
# Minted here: nothing secret is committed.
PASSWORD = "pw-" + os.urandom(6).hex()  # pragma: allowlist secret


def _document() -> dict[str, Any]:
    url = SecretStr(f"amqp://chat:{PASSWORD}@rabbit.internal:5673/team%2Fa")
    contract = contract_from(Settings(broker_url=url))
    return asyncapi_document(CONSUMERS, version="test", contract=contract)


def test_server_names_the_vhost_from_settings_and_no_credentials() -> None:
    """Host, port and vhost come from EVENTGUARD_BROKER_URL; its user and password do not."""
    doc = _document()
    server = doc["servers"]["rabbitmq"]
    assert server["host"] == "rabbit.internal:5673"
    assert server["pathname"] == "/team%2Fa"
    assert doc["channels"]["health_heartbeat"]["bindings"]["amqp"]["exchange"]["vhost"] == "team/a"
    assert PASSWORD not in json.dumps(doc)


def test_channels_state_their_producers() -> None:
    """Each channel lists the AMQP users the producer policy lets publish it."""
    channels = _document()["channels"]
    assert channels["opportunity_scan_requested"]["x-eventguard-producers"] == [
        "chat",
        "marketplace",
        "operator",
    ]
    assert "chat, marketplace, operator" in channels["opportunity_scan_requested"]["description"]
    assert channels["quarantine_entry_added"]["x-eventguard-producers"] == ["quarantine"]


def test_requests_have_reply_objects() -> None:
    """Every request type's send and receive operations name its answers on reply_to."""
    operations = _document()["operations"]
    for request, answers in REPLIES.items():
        key = request.replace(".", "_")
        reply = operations[f"send_{key}"]["reply"]
        assert reply["channel"] == {"$ref": "#/channels/replies"}
        named = [ref["$ref"].rsplit("/", 1)[1] for ref in reply["messages"]]
        assert named == [a.replace(".", "_") for a in answers]
        receivers = [op for name, op in operations.items() if name.endswith(f"_receives_{key}")]
        assert receivers
        assert all(op["reply"] == reply for op in receivers)


def test_messages_carry_properties_headers_and_reasons() -> None:
    """The AMQP trait names message_id, user_id, correlation_id, x-eventguard-* and reasons."""
    doc = _document()
    trait = doc["components"]["messageTraits"]["amqp"]
    assert {"message_id", "user_id", "correlation_id", "type", "content_type"} <= set(
        trait["x-amqp-properties"]
    )
    headers = doc["components"]["schemas"]["AmqpHeaders"]["properties"]
    assert {"traceparent", "x-eventguard-producer", "x-eventguard-release-id"} <= set(headers)
    assert {"tracestate", "x-eventguard-origin-traceparent"} <= set(headers)
    assert all(reason in trait["description"] for reason in DEAD_REASONS)
    message = doc["components"]["messages"]["ai_completion_requested"]
    assert message["examples"][0]["payload"]["type"] == "ai.completion.requested"
    assert message["bindings"]["amqp"]["messageType"] == "ai.completion.requested"


def test_worker_routes_that_reply_are_the_reply_table() -> None:
    """Routes answering reply_to are exactly the requests of REPLIES, with their answers."""
    replying = {
        event_type: route.reply
        for service in inert_services().values()
        for event_type, route in service.router.routes.items()
        if route.reply
    }
    assert set(replying) == set(REPLIES)
    for event_type, reply in replying.items():
        assert reply is True or set(reply) <= set(REPLIES[event_type]), event_type


def test_asyncapi_parser_finds_no_error_or_warning(tmp_path: Path) -> None:
    """@asyncapi/parser (npm) reports not one diagnostic on the exported document."""
    if not PARSER.exists() or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("@asyncapi/parser is missing: run scripts/asyncapi-tools.sh")
        pytest.skip("@asyncapi/parser is missing: run scripts/asyncapi-tools.sh (make test does)")
    contract = contract_from(Settings())
    write_all(tmp_path, CONSUMERS, version="test", contract=contract)
    result = subprocess.run(  # noqa: S603 - a fixed script on a file this test wrote
        ["node", "scripts/asyncapi-validate.mjs", str(tmp_path / "asyncapi.json")],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
