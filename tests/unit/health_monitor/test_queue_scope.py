"""The health monitor watches only its own vhost's fleet queues (finding 7 of issue 19): other
vhosts' queues and the load generator's observer queues never raise QueueWithoutConsumers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common.config.workers import HealthMonitorSettings
from common.reliability.guard import Guards
from workers.health_monitor.collectors import fleet_queue_kind, rabbitmq_collector


def _queue(name: str, vhost: str, consumers: int = 0) -> dict[str, Any]:
    return {
        "name": name,
        "vhost": vhost,
        "consumers": consumers,
        "messages_ready": 0,
        "messages_unacknowledged": 0,
    }


QUEUES = [
    _queue("eventguard.quarantine", "prod", consumers=1),
    _queue("eventguard.quarantine.retry.1000ms", "prod"),
    _queue("eventguard.dead", "prod", consumers=1),
    _queue("eventguard.ledger.0123456789ab", "prod"),  # a load generator's observer
    _queue("eventguard.billing-report", "prod"),  # not a worker of the fleet
    _queue("eventguard.quarantine", "other"),  # another deployment's vhost
]


@pytest.fixture
async def management() -> AsyncIterator[str]:
    """A stand-in management API: /api/queues lists every vhost, /api/queues/{vhost} one."""

    async def every(_request: web.Request) -> web.Response:
        return web.json_response(QUEUES)

    async def one(request: web.Request) -> web.Response:
        vhost = request.match_info["vhost"]
        return web.json_response([q for q in QUEUES if q["vhost"] == vhost])

    app = web.Application()
    app.router.add_get("/api/queues", every)
    app.router.add_get("/api/queues/{vhost}", one)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_only_the_fleet_queues_of_its_vhost_are_sampled(management: str) -> None:
    """Samples name the vhost and cover only eventguard.<worker>[.retry.*] and dead/unrouted."""
    settings = HealthMonitorSettings(rabbitmq_api_url=management)
    async with aiohttp.ClientSession() as session:
        samples = await rabbitmq_collector(settings, Guards(), session, vhost="prod")()
    queues = {
        (dict(s.labels)["queue"], dict(s.labels)["queue_kind"], dict(s.labels)["vhost"])
        for s in samples
        if s.metric == "queue_consumers"
    }
    assert queues == {
        ("eventguard.quarantine", "work", "prod"),
        ("eventguard.quarantine.retry.1000ms", "retry", "prod"),
        ("eventguard.dead", "dead", "prod"),
    }


def test_fleet_queue_kind() -> None:
    """Work, retry, dead and unrouted queues of the fleet are known; anything else is not."""
    workers = ["quarantine", "ai_fallback"]
    assert fleet_queue_kind("eventguard.ai_fallback", workers) == "work"
    assert fleet_queue_kind("eventguard.ai_fallback.retry.5000ms", workers) == "retry"
    assert fleet_queue_kind("eventguard.unrouted", workers) == "unrouted"
    assert fleet_queue_kind("eventguard.ledger.abc", workers) is None
    assert fleet_queue_kind("eventguard.ai_fallbackx", workers) is None
