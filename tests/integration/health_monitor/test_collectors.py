"""The health monitor's collectors against the real RabbitMQ management API and Redis."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from common.config.workers import HealthMonitorSettings
from common.metrics import Metrics
from common.preflight import url_vhost
from common.reliability.guard import Guards
from common.store import Store
from workers.health_monitor.collectors import collect_all, rabbitmq_collector, redis_collector
from workers.health_monitor.evaluator import Sample

# The management API of the broker under test (EVENTGUARD_TEST_AMQP_URL's).
MANAGEMENT = os.environ.get("EVENTGUARD_TEST_MGMT_URL", "http://127.0.0.1:15672")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One HTTP session per test."""
    async with aiohttp.ClientSession() as client:
        yield client


async def _management_up(session: aiohttp.ClientSession) -> bool:
    try:
        async with session.get(
            MANAGEMENT + "/api/overview",
            headers={"Authorization": aiohttp.encode_basic_auth("guest", "guest")},
        ) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def _value(samples: list[Sample], metric: str, **labels: str) -> float | None:
    for sample in samples:
        found = dict(sample.labels)
        if sample.metric == metric and all(found.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


async def test_management_api_reports_queue_depth(
    rabbit_url: str, session: aiohttp.ClientSession
) -> None:
    """Queue depth and consumers of a fleet queue in the worker's vhost come from the
    management API."""
    if not await _management_up(session):
        pytest.skip("INTEGRATION SKIPPED: the RabbitMQ management plugin is not enabled")
    worker = f"hm-{uuid.uuid4().hex[:8]}"
    name = f"eventguard.{worker}"
    connection = await aio_pika.connect(rabbit_url, client_properties={"connection_name": name})
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=False, auto_delete=False)
        for _ in range(3):
            await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
        settings = HealthMonitorSettings(
            rabbitmq_api_url=MANAGEMENT,
            rabbitmq_api_password="guest",  # pragma: allowlist secret
        )
        collect = rabbitmq_collector(
            settings, Guards(), session, vhost=url_vhost(rabbit_url), workers=[worker]
        )
        depth = None
        async with asyncio.timeout(20):
            while depth != 3.0:  # the management API's stats lag by a few seconds
                samples = await collect()
                depth = _value(samples, "queue_depth", queue=name)
                await asyncio.sleep(0.5)
        assert _value(samples, "target_up", target="rabbitmq") == 1.0
        assert _value(samples, "queue_consumers", queue=name) == 0.0
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def test_redis_info_is_collected(redis_url: str) -> None:
    """Memory and clients come from the real Redis INFO."""
    client = Redis.from_url(redis_url)
    try:
        samples = await redis_collector(Store(client, prefix="hm-it:"))()
    finally:
        await client.aclose()
    assert _value(samples, "target_up", target="redis") == 1.0
    memory = _value(samples, "redis_used_memory_bytes")
    assert memory is not None
    assert memory > 0
    clients = _value(samples, "redis_connected_clients")
    assert clients is not None
    assert clients >= 1


async def test_garbage_or_unreachable_target_counts_as_down(session: aiohttp.ClientSession) -> None:
    """A management URL that answers HTML, and one that refuses connections, are both down."""

    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/api/queues", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    metrics = Metrics(CollectorRegistry())
    try:
        garbage = rabbitmq_collector(
            HealthMonitorSettings(rabbitmq_api_url=f"http://127.0.0.1:{port}"), Guards(), session
        )
        closed = rabbitmq_collector(
            HealthMonitorSettings(rabbitmq_api_url="http://127.0.0.1:9"), Guards(), session
        )
        samples = await collect_all(
            {"garbage": garbage, "closed": closed}, timeout_s=5, metrics=metrics
        )
    finally:
        await runner.cleanup()
    assert _value(samples, "target_up", target="garbage") == 0.0
    assert _value(samples, "target_up", target="closed") == 0.0
