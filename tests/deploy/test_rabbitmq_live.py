"""A real RabbitMQ loads deploy/rabbitmq/definitions.json, and `topology apply` agrees with it."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.bus.topology import worker_topology
from common.config import Settings
from common.metrics import Metrics
from tests.deploy._tools import DEPLOY
from workers.registry import consumed_types

pytestmark = pytest.mark.integration
_AMQP_URL = os.environ.get(
    "EVENTGUARD_TEST_AMQP_URL",
    "amqp://guest:guest@127.0.0.1:5672/",  # pragma: allowlist secret
)
_VHOST_SCOPED = ("exchanges", "queues", "bindings", "policies")


def _management() -> tuple[str, dict[str, str]]:
    parts = urlsplit(_AMQP_URL)
    host = parts.hostname or "127.0.0.1"
    token = base64.b64encode(f"{parts.username or ''}:{parts.password or ''}".encode()).decode()
    return f"http://{host}:15672/api", {"Authorization": f"Basic {token}"}


@pytest.fixture
async def vhost() -> AsyncIterator[str]:
    """A fresh vhost on the real RabbitMQ with guest allowed in; deleted afterwards."""
    api, auth = _management()
    name = f"eventguard-deploy-{uuid.uuid4().hex[:8]}"
    try:
        async with (
            aiohttp.ClientSession(headers=auth) as session,
            session.put(f"{api}/vhosts/{quote(name, safe='')}") as response,
        ):
            response.raise_for_status()
    except aiohttp.ClientError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the RabbitMQ management API is unreachable: {error}")
        pytest.skip(f"INTEGRATION SKIPPED: RabbitMQ management API unreachable at {api}: {error}")
    async with aiohttp.ClientSession(headers=auth) as session:
        try:
            user = urlsplit(_AMQP_URL).username or "guest"
            every = {"configure": ".*", "write": ".*", "read": ".*"}
            path = f"{api}/permissions/{quote(name, safe='')}/{user}"
            async with session.put(path, json=every) as response:
                response.raise_for_status()
            yield name
        finally:
            async with session.delete(f"{api}/vhosts/{quote(name, safe='')}"):
                pass


async def _get(session: aiohttp.ClientSession, path: str) -> Any:
    async with session.get(path) as response:
        response.raise_for_status()
        return await response.json()


async def test_definitions_load_and_topology_apply_changes_nothing(vhost: str) -> None:
    """RabbitMQ accepts the definitions; declaring every worker's topology on top of them then
    passes (a differing argument would fail with PRECONDITION_FAILED) and adds nothing."""
    definitions = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    scoped = {key: [{**item, "vhost": vhost} for item in definitions[key]] for key in _VHOST_SCOPED}
    api, auth = _management()
    encoded = quote(vhost, safe="")
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.post(f"{api}/definitions/{encoded}", json=scoped) as response:
            assert response.status < 300, await response.text()
        loaded = {q["name"]: q["arguments"] for q in await _get(session, f"{api}/queues/{encoded}")}
        assert loaded == {q["name"]: q["arguments"] for q in definitions["queues"]}

        broker = AmqpBroker(
            urlsplit(_AMQP_URL)._replace(path="/" + encoded).geturl(),  # its vhost, not ours
            metrics=Metrics(CollectorRegistry()),
            name=f"test-deploy-definitions-{vhost}",
            start_timeout_s=10,
        )
        await broker.start()
        try:
            for worker, types in consumed_types().items():
                await broker.declare(
                    worker_topology(worker, types, Settings())
                )
        finally:
            await broker.close()

        after = {q["name"]: q["arguments"] for q in await _get(session, f"{api}/queues/{encoded}")}
        assert after == loaded
        bindings = [b for b in await _get(session, f"{api}/bindings/{encoded}") if b["source"]]
        assert len(bindings) == len(definitions["bindings"])
        exchanges = {
            e["name"]: e["arguments"]
            for e in await _get(session, f"{api}/exchanges/{encoded}")
            if e["name"].startswith("eventguard.")
        }
        assert exchanges == {e["name"]: e["arguments"] for e in definitions["exchanges"]}
