"""The producer policy live: each worker and producer as its own RabbitMQ user, with the
permissions deploy/rabbitmq/definitions.json grants them, in a vhost of its own.

The rest of the suite publishes as guest with a dev-only any-type allowance; here nothing is
allowed but what the deployed table allows. Workers declare their topology and talk to each
other (heartbeats, alerts, announcements) under their own users; a producer publishing a type
it may not is dead-lettered as ``unauthorized`` and quarantined; one claiming another user's
identity is refused by RabbitMQ itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from common.bus.amqp import AmqpBroker
from common.bus.idempotency import is_done
from common.bus.publisher import to_message
from common.errors import EventGuardError
from common.metrics import Metrics
from common.store import Store, connect_redis
from eventguard.definitions import rabbitmq_definitions
from schemas.envelope import new_event
from schemas.marketplace import StrategyPurchased
from schemas.quarantine import QuarantineRequested
from tests.e2e.conftest import FLEET, Fleet

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.smoke]

PRODUCERS = ("marketplace", "operator")


MANAGEMENT = "http://127.0.0.1:15672/api"


@pytest.fixture  # requested before ``fleet``: the workers stop before their vhost goes
async def vhost() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A fresh vhost; the fleet's and two producers' users (random passwords) with the deployed
    permissions; guest may observe. Made through the management API; deleted afterwards."""
    name = f"eg-e2e-{uuid.uuid4().hex[:8]}"
    path = quote(name, safe="")
    passwords = {user: secrets.token_urlsafe(16) for user in (*FLEET, *PRODUCERS)}
    guest = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    async with aiohttp.ClientSession(headers=guest, raise_for_status=True) as api:

        async def put(resource: str, body: dict[str, Any]) -> None:
            async with api.put(f"{MANAGEMENT}/{resource}", json=body):
                pass

        try:
            await put(f"vhosts/{path}", {})
        except aiohttp.ClientConnectionError:
            pytest.skip("E2E SKIPPED: the RabbitMQ management plugin is not enabled")
        try:
            for user, password in passwords.items():  # an earlier run's user is taken over
                await put(f"users/{user}", {"password": password, "tags": ""})
            for permission in rabbitmq_definitions()["permissions"]:
                if permission["user"] in passwords:
                    rights = {k: permission[k] for k in ("configure", "write", "read")}
                    await put(f"permissions/{path}/{permission['user']}", rights)
            await put(f"permissions/{path}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
            yield name, passwords
        finally:
            async with api.delete(f"{MANAGEMENT}/vhosts/{path}"):
                pass


def _url(user: str, password: str, vhost: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:5672/{quote(vhost, safe='')}"


async def _broker(url: str, name: str) -> AmqpBroker:
    broker = AmqpBroker(url, metrics=Metrics(CollectorRegistry()), name=name)
    await broker.start()
    return broker


async def test_every_party_as_its_own_user_with_the_deployed_permissions(
    vhost: tuple[str, dict[str, str]], fleet: Fleet, redis_url: str
) -> None:
    """Workers run and talk under their own users; a type a producer may not publish is
    dead-lettered as unauthorized and quarantined; an allowed one is handled; a forged user id
    never reaches a worker."""
    name, passwords = vhost
    for worker in FLEET:
        await fleet.start(
            worker,
            EVENTGUARD_BROKER_URL=_url(worker, passwords[worker], name),
            EVENTGUARD_BROKER_USER=worker,
            EVENTGUARD_SECURITY__ANY_TYPE_PRODUCERS="[]",
            EVENTGUARD_RUNTIME__RELAY_USERS='["quarantine"]',
        )
    observer = await aio_pika.connect(_url("guest", "guest", name))
    seen: list[dict[str, Any]] = []
    async with observer:
        channel = await observer.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("eventguard.events", "#")

        async def see(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                seen.append(json.loads(message.body))

        await queue.consume(see)
        marketplace = await _broker(_url("marketplace", passwords["marketplace"], name), "mkt")
        operator = await _broker(_url("operator", passwords["operator"], name), "op")
        try:
            purchase = new_event(
                "marketplace.strategy.purchased",
                StrategyPurchased(user_id="live-user", strategy="momentum"),
                source="e2e",
            )
            await marketplace.publish(to_message(purchase, user_id="marketplace"))
            request = QuarantineRequested(
                kind="producer", entity_id="live-rogue", reason="e2e", requested_by="op"
            )
            forbidden = new_event("quarantine.requested", request, source="e2e")
            await marketplace.publish(to_message(forbidden, user_id="marketplace"))
            allowed = new_event("quarantine.requested", request, source="e2e")
            await operator.publish(to_message(allowed, user_id="operator"))
            forged = new_event("quarantine.requested", request, source="e2e")
            with pytest.raises(EventGuardError):  # RabbitMQ checks user_id against the login
                await marketplace.publish(to_message(forged, user_id="operator"))
            store = Store(connect_redis(redis_url), prefix=fleet.env["EVENTGUARD_REDIS_KEY_PREFIX"])
            done_key = store.key("idem", "opportunity_discovery", purchase.id)

            def added(entity: str) -> list[dict[str, Any]]:
                return [
                    e["data"]
                    for e in seen
                    if e["type"] == "quarantine.entry.added" and e["data"]["entity_id"] == entity
                ]

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                purchased = is_done(await store.client.get(done_key))
                if purchased and added(forbidden.id) and added("live-rogue"):
                    break
                await asyncio.sleep(0.2)
            await store.close()
        finally:
            await marketplace.close()
            await operator.close()
        assert purchased, "the marketplace's purchase was not handled"
        (dead,) = added(forbidden.id)
        assert dead["kind"] == "message"
        assert dead["reason"].startswith("unauthorized"), dead
        assert "'marketplace' may not publish quarantine.requested" in dead["reason"]
        (entry,) = added("live-rogue")  # the operator's request, once
        assert entry["kind"] == "producer"
        assert forged.id not in {e["id"] for e in seen}
        assert not added(forged.id)
    beats = await fleet.get("health_monitor").metric(
        "eventguard_messages_consumed_total", type="health.heartbeat", outcome="ack"
    )
    assert beats > 0, "no heartbeat reached health_monitor under the workers' own users"
    refused = {
        worker: await fleet.get(worker).metric(
            "eventguard_dead_letters_total", reason="unauthorized"
        )
        for worker in FLEET
    }
    assert refused == {
        "health_monitor": 0,
        "quarantine": 1,  # the marketplace's quarantine request, and nothing of the fleet's own
        "ai_fallback": 0,
        "opportunity_discovery": 0,
    }
