"""The last-resort dead-letter queue is watched, and never mistaken for a work queue."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from common.bus.topology import DEAD_QUEUE, UNRECORDED_QUEUE, UNROUTED_QUEUE
from common.config.workers import HealthMonitorSettings
from common.reliability.guard import Guards
from workers.health_monitor.collectors import rabbitmq_collector
from workers.health_monitor.rules import load_rules


async def test_unrecorded_queue_has_its_own_kind() -> None:
    """eventguard.dead.unrecorded is kind `unrecorded`, so no-consumer rules leave it alone."""
    queues = [
        {"name": name, "messages_ready": 2, "consumers": 0, "messages_unacknowledged": 0}
        for name in ("eventguard.quarantine", DEAD_QUEUE, UNRECORDED_QUEUE, UNROUTED_QUEUE)
    ]

    async def api(_request: web.Request) -> web.Response:
        return web.json_response(queues)

    app = web.Application()
    app.router.add_get("/api/queues/{vhost}", api)
    async with TestServer(app, port=0) as server, aiohttp.ClientSession() as session:
        settings = HealthMonitorSettings(rabbitmq_api_url=str(server.make_url("/")))
        samples = await rabbitmq_collector(settings, Guards(), session)()
    kinds = {
        dict(s.labels)["queue"]: dict(s.labels)["queue_kind"]
        for s in samples
        if s.metric == "queue_depth"
    }
    assert kinds == {
        "eventguard.quarantine": "work",
        DEAD_QUEUE: "dead",
        UNRECORDED_QUEUE: "unrecorded",
        UNROUTED_QUEUE: "unrouted",
    }


def test_a_default_rule_fires_on_any_unrecorded_dead_letter() -> None:
    """DeadLettersUnrecorded is critical as soon as the queue holds one message."""
    (rule,) = [r for r in load_rules(None) if r.name == "DeadLettersUnrecorded"]
    assert rule.metric == "queue_depth"
    assert dict(rule.labels) == {"queue_kind": "unrecorded"}
    assert rule.critical == 0
    assert rule.comparison == ">"
