"""Finding 7: failed authentications are limited per client address and per key id (429 with
Retry-After), and /readyz runs its probes at most once a second."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from common.ops import build_app
from common.security.apikeys import ApiKeyStore
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.security.roles import Role
from common.security.throttle import AuthThrottle
from common.security.tokens import TokenService
from tests.unit.security._ops import Ops, ops_server


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    """An ops server allowing 3 failures per address per minute."""
    security = demo_settings().model_copy(
        update={"auth_failure_limit": 3, "auth_failure_window_s": 60}
    )
    async with ops_server(security=security) as server:
        yield server


async def test_failures_from_one_address_are_throttled(ops: Ops) -> None:
    """After 3 bad tokens even a good one from that address gets 429 with Retry-After."""
    forged = TokenService(demo_settings(), store=None).issue("eve", "admin")  # another key
    bad = {"Authorization": f"Bearer {forged}"}
    statuses = [(await ops.client.get("/admin/workers", headers=bad)).status for _ in range(3)]
    assert statuses == [401, 401, 401]
    blocked = await ops.client.get("/admin/workers", headers=ops.bearer("operator"))
    assert blocked.status == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert blocked.content_type == "application/problem+json"
    assert (await ops.client.get("/healthz")).status == 200  # probes are never throttled


async def test_guests_without_credentials_are_not_counted(ops: Ops) -> None:
    """Calls without credentials are not guesses: they stay 401, never 429."""
    for _ in range(6):
        assert (await ops.client.get("/admin/workers")).status == 401


async def test_failures_for_one_key_id_are_throttled() -> None:
    """Wrong secrets for one API key id lock that key id, whichever address they come from."""
    async with ops_server() as ops:
        keys = ApiKeyStore(ops.fleet.store)
        key, secret = await keys.create("svc", Role.OPERATOR)
        auth = AdminAuth(
            tokens=ops.tokens,
            api_keys=keys,
            metrics=ops.fleet.metrics,
            throttle=AuthThrottle(ops.fleet.store, limits={"key": 2}, window_s=60),
        )
        app = build_app(ops.fleet.runtime, auth=auth, stream=ops.stream)
        async with TestClient(TestServer(app)) as client:
            wrong = {"X-API-Key": f"egk_{key.key_id}_{'A' * 43}"}
            assert (await client.get("/admin/workers", headers=wrong)).status == 401
            assert (await client.get("/admin/workers", headers=wrong)).status == 401
            right = await client.get("/admin/workers", headers={"X-API-Key": secret})
            assert right.status == 429
            other = await client.get("/admin/workers", headers=ops.bearer("operator"))
            assert other.status == 200  # another key id, same address: no per-address limit here


async def test_readyz_probes_at_most_once_a_second() -> None:
    """Concurrent calls share one probe run, later ones within a second get its answer, and
    after a second the probes run again."""
    async with ops_server() as ops:
        runtime = ops.fleet.runtime
        calls: list[int] = []
        real_ready = runtime.ready

        async def counted() -> Any:
            calls.append(1)
            return await real_ready()

        runtime.ready = counted  # type: ignore[method-assign]
        now = [100.0]
        app = build_app(runtime, auth=ops.auth, stream=ops.stream, monotonic=lambda: now[0])
        async with TestClient(TestServer(app)) as client:
            answers = await asyncio.gather(*(client.get("/readyz") for _ in range(10)))
            assert {answer.status for answer in answers} == {200}
            for _ in range(5):
                assert (await client.get("/readyz")).status == 200
            assert len(calls) == 1  # ten at once shared one run, the rest hit the cache
            now[0] += 1.01
            assert (await client.get("/readyz")).status == 200
            assert len(calls) == 2
