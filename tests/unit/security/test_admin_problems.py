"""Finding 3: every admin route validates its body and answers errors as RFC 9457 problem
documents (400, 401, 403, 404, 413), never a 500 or a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.unit.security._ops import Ops, ops_server

PROBLEM = "application/problem+json"


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    """Quarantine and health_monitor behind one ops server."""
    async with ops_server(workers=("quarantine", "health_monitor")) as server:
        yield server


async def _problem(response: object) -> dict[str, object]:
    assert getattr(response, "content_type", None) == PROBLEM
    body: dict[str, object] = await response.json()  # type: ignore[attr-defined]
    assert body["status"] == getattr(response, "status", None)
    assert str(body["type"]).startswith("urn:eventguard:problem:")
    return body


async def test_deeply_nested_body_is_a_400_problem(ops: Ops) -> None:
    """5,000 nested arrays on the review route: 400 invalid_body, not a RecursionError 500."""
    body = '{"note": ' + "[" * 5_000 + "]" * 5_000 + "}"
    response = await ops.client.post(
        "/admin/quarantine/records/r1/review", data=body, headers=ops.bearer("operator")
    )
    assert response.status == 400
    assert (await _problem(response))["code"] == "invalid_body"


async def test_a_5000_digit_integer_is_a_400_problem(ops: Ops) -> None:
    """A 5,000-digit duration on health_monitor's silence route: 400, never 500."""
    body = '{"matchers": {"alertname": "x"}, "duration_s": ' + "9" * 5_000 + "}"
    response = await ops.client.post(
        "/admin/health/silences", data=body, headers=ops.bearer("operator")
    )
    assert response.status == 400
    problem = await _problem(response)
    assert problem["code"] == "invalid_body"
    assert "9999" not in str(problem)  # the input is not echoed


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/quarantine/records/r1/release", "[1, 2]"),
        ("/admin/quarantine/records/r1/discard", '{"note": 5}'),
        ("/admin/quarantine/records/r1/extend", '{"ttl_s": "60"}'),
        ("/admin/quarantine/records/r1/extend", '{"ttl_s": 1e400}'),
        ("/admin/quarantine/records/r1/block", '{"note": "x", "extra": 1}'),
        ("/admin/health/silences", '{"matchers": {}, "duration_s": 5}'),
        ("/admin/health/silences", '{"matchers": {"a": "b"}, "duration_s": NaN}'),
        ("/admin/health/silences", "not json"),
        ("/admin/tokens/revoke", '{"jti": "a", "sub": "b"}'),
    ],
)
async def test_bad_bodies_are_400_problems(ops: Ops, path: str, body: str) -> None:
    """Wrong types, unknown fields, strings for numbers, NaN and non-JSON: a 400 problem."""
    response = await ops.client.post(path, data=body, headers=ops.bearer("admin"))
    assert response.status == 400
    assert (await _problem(response))["code"] == "invalid_body"


async def test_oversized_body_is_a_413_problem(ops: Ops) -> None:
    """A body past 64 KiB is refused before it is parsed."""
    body = '{"note": "' + "x" * 70_000 + '"}'
    response = await ops.client.post(
        "/admin/quarantine/records/r1/review", data=body, headers=ops.bearer("operator")
    )
    assert response.status == 413
    await _problem(response)


async def test_bad_query_is_a_400_problem(ops: Ops) -> None:
    """A query parameter outside its bounds is a 400 problem naming the parameter."""
    response = await ops.client.get(
        "/admin/quarantine/records?limit=99999", headers=ops.bearer("operator")
    )
    assert response.status == 400
    problem = await _problem(response)
    assert problem["errors"][0]["loc"] == ["limit"]  # type: ignore[index]


async def test_unknown_route_is_404_and_no_credentials_is_a_generic_401(ops: Ops) -> None:
    """An unknown path is 404 (not 403 no_rule); a real route without credentials is 401
    "missing credentials" (not insufficient_role)."""
    unknown = await ops.client.post("/admin/quarantine/nothing", headers=ops.bearer("operator"))
    assert unknown.status == 404
    await _problem(unknown)
    missing = await ops.client.get("/admin/quarantine/records")
    assert missing.status == 401
    problem = await _problem(missing)
    assert (problem["code"], problem["detail"]) == ("missing_credentials", "missing credentials")
    low = await ops.client.post("/admin/quarantine/records/r1/block", headers=ops.bearer("user"))
    assert low.status == 403
    assert (await _problem(low))["code"] == "forbidden"


async def test_conflicts_and_missing_records_are_problems(ops: Ops) -> None:
    """A release of a record that does not exist is a 404 problem."""
    response = await ops.client.post(
        "/admin/quarantine/records/nope/release", json={}, headers=ops.bearer("operator")
    )
    assert response.status == 404
    assert (await _problem(response))["code"] == "unknown_record"


async def test_a_body_sent_in_many_chunks_is_read_whole(ops: Ops) -> None:
    """A valid 40 KiB body arriving in 1 KiB chunks is read to its end, not cut at a chunk."""

    async def chunks() -> AsyncIterator[bytes]:
        text = '{"note": "' + "n" * 1_500 + '"' + " " * 40_000 + "}"
        for start in range(0, len(text), 1_000):
            yield text[start : start + 1_000].encode()
            await asyncio.sleep(0.001)  # the chunks arrive apart

    response = await ops.client.post(
        "/admin/quarantine/records/r1/review", data=chunks(), headers=ops.bearer("operator")
    )
    assert response.status == 404  # validated whole, then the record is unknown
    assert (await response.json())["code"] == "unknown_record"
