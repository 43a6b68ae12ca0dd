"""The admin API's OpenAPI document, fuzzed with schemathesis against a live worker (real
RabbitMQ and Redis) as an operator and as an admin: no 5xx, every answer's status, content type,
headers and body as the document says; and the state-changing calls reach the audit trail over
the real broker."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from eventguard.admin_api import admin_openapi
from tests.integration.security.conftest import running, tokens_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
_EXAMPLES = 6


def _served(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/admin/openapi.json", timeout=5) as answer:  # noqa: S310
        document: dict[str, Any] = json.load(answer)
    return document


def _audit_trail(url: str, token: str) -> list[dict[str, Any]]:
    """The audit records (over RabbitMQ into the quarantine worker's Redis), polled for 10 s."""
    request = urllib.request.Request(  # noqa: S310 - our own http URL
        f"{url}/admin/audit?limit=1000", headers={"Authorization": f"Bearer {token}"}
    )
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            records: list[dict[str, Any]] = json.load(answer)["records"]
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_every_admin_operation_conforms_for_operator_and_admin(live_env_factory: Any) -> None:
    """Generated valid and invalid requests to every operation: no 5xx, all answers conform."""
    env = live_env_factory(EVENTGUARD_SECURITY__AUTH_FAILURE_LIMIT="0")
    tokens = tokens_for(env)
    subject = f"fuzz-{uuid.uuid4().hex[:6]}"
    with running(env, ("quarantine", "health_monitor", "opportunity_discovery")) as worker:
        document = _served(worker.url)
        schema = schemathesis.openapi.from_dict(document)
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the document itself must be valid
            operations.append(result.ok())
        assert len(operations) >= 20
        calls = 0
        for operation in operations:
            strategy = st.one_of(
                operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
            )

            @settings(
                max_examples=_EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy, role=st.sampled_from(["operator", "admin"]))
            def call(case: Any, role: str) -> None:
                nonlocal calls
                token = tokens.issue(f"{subject}-{role}", role)
                headers = {"Authorization": f"Bearer {token}"}
                response = case.call(base_url=worker.url, headers=headers, timeout=10)
                calls += 1
                case.validate_response(response, checks=CHECKS)

            call()
        assert calls >= len(operations) * 2
        trail = _audit_trail(worker.url, tokens.issue(f"{subject}-reader", "operator"))
        assert trail, "the state-changing calls left no audit record"
        assert {record["subject"] for record in trail} <= {
            f"{subject}-operator",
            f"{subject}-admin",
            "anonymous",
        }
    exported = admin_openapi()
    assert set(exported["paths"]) >= set(document["paths"])  # the export covers every worker
