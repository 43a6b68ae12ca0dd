"""Run workers in-process on the in-memory broker and fakeredis, for unit tests and the demo.

Integration tests do not use this: they talk to the real RabbitMQ and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import fakeredis
import lupa  # noqa: F401 - fakeredis runs the Lua scripts with it: missing, fail at import, not at the first EVAL
from prometheus_client import CollectorRegistry

from common.bus.memory import MemoryBroker
from common.bus.message import OutgoingMessage
from common.bus.pipeline import Authorizer, allow_all
from common.bus.publisher import Publisher
from common.bus.topology import DEAD_QUEUE
from common.config import RuntimeSettings, Settings
from common.metrics import Metrics
from common.reliability.guard import Guards
from common.runtime import Runtime
from common.service import ServiceFactory
from common.store import Store
from schemas.envelope import Actor, Envelope, Payload, new_event
from schemas.registry import envelope_model

__all__ = ["Harness", "fast_runtime_settings", "forget_prefix", "run_workers"]


async def forget_prefix(client: Any, prefix: str, *, chunk: int = 5_000) -> int:
    """Delete every key under ``prefix`` on a real Redis (``client`` is redis-py's asyncio
    client); returns how many. Tests and benchmarks share one database: idempotency marks live
    for days and quarantine records for ever, and what is left behind slows every later SCAN."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=prefix + "*", count=10_000):
        batch.append(key)
        if len(batch) >= chunk:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


def fast_runtime_settings(**overrides: Any) -> RuntimeSettings:
    """Runtime settings with millisecond retry delays and no heartbeat noise."""
    values: dict[str, Any] = {
        "retry_delays_s": (0.01, 0.02, 0.04),
        "max_attempts": 3,
        "handler_timeout_s": 5.0,
        "heartbeat_interval_s": 3600.0,
        "drain_timeout_s": 2.0,
        **overrides,
    }
    return RuntimeSettings(**values)


class Harness:
    """A running in-memory fleet: publish events, wait for the ones it emits."""

    def __init__(self, runtime: Runtime, broker: MemoryBroker, store: Store, metrics: Metrics):
        self.runtime = runtime
        self.broker = broker
        self.store = store
        self.metrics = metrics
        self.producer = Publisher(broker, worker="test", user_id="test", metrics=metrics)

    async def publish(
        self,
        event_type: str,
        data: Payload,
        *,
        actor: Actor | None = None,
        reply_to: str | None = None,
        user_id: str | None = "test",
    ) -> Envelope[Any]:
        """Publish one event as producer ``user_id``; returns the envelope sent."""
        event = new_event(event_type, data, source="test", actor=actor)
        self.producer.user_id = user_id
        await self.producer.publish(event, reply_to=reply_to)
        return event

    def emitted(self, event_type: str) -> list[Envelope[Any]]:
        """Every event of ``event_type`` published so far, decoded."""
        model = envelope_model(event_type)
        return [
            model.model_validate_json(m.body)
            for m in self.broker.published
            if m.type == event_type and m.exchange != DEAD_QUEUE
        ]

    async def wait_for(
        self,
        event_type: str,
        predicate: Callable[[Envelope[Any]], bool] = lambda _e: True,
        *,
        within: float = 5.0,
    ) -> Envelope[Any]:
        """The first event of ``event_type`` matching ``predicate`` (polls the published log)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.emitted(event_type):
                    if predicate(event):
                        return event
                await asyncio.sleep(0.005)

    def dead(self) -> list[OutgoingMessage]:
        """Messages waiting in the dead-letter queue."""
        return self.broker.messages(DEAD_QUEUE)

    async def settle(self) -> None:
        """Wait until no delivery is in progress."""
        async with asyncio.timeout(10):
            await self.broker.idle()


@contextlib.asynccontextmanager
async def run_workers(
    factories: Sequence[tuple[str, ServiceFactory]],
    *,
    settings: Settings | None = None,
    authorize: Authorizer = allow_all,
    redis: Any = None,
    guards: Guards | None = None,
) -> AsyncIterator[Harness]:
    """Run ``factories`` on a fresh in-memory broker and fakeredis (or ``redis``)."""
    settings = settings or Settings(runtime=fast_runtime_settings())
    client = redis if redis is not None else fakeredis.FakeAsyncRedis()
    metrics = Metrics(CollectorRegistry())
    broker = MemoryBroker()
    runtime = Runtime.assemble(
        settings,
        factories,
        broker=broker,
        store=lambda guard: Store(client, prefix=settings.redis_key_prefix, guard=guard),
        metrics=metrics,
        authorize=authorize,
        guards=guards,
    )
    async with runtime.lifespan():
        yield Harness(runtime, broker, runtime.store, metrics)
