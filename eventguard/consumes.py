"""What each worker consumes, read from its router (used by the CLI, schema export and deploy
checks)."""

from __future__ import annotations

import fakeredis
from prometheus_client import CollectorRegistry

from common.bus.memory import MemoryBroker
from common.bus.publisher import Publisher
from common.bus.router import Route
from common.config import Settings
from common.metrics import Metrics
from common.service import Service, WorkerContext
from common.store import Store
from workers.registry import WORKERS

__all__ = ["consumed_types", "inert_services", "worker_routes"]


def inert_services(settings: Settings | None = None) -> dict[str, Service]:
    """Every worker's service, built on inert parts (nothing started, nothing connected)."""
    settings = settings or Settings()
    metrics = Metrics(CollectorRegistry())
    broker = MemoryBroker()
    store = Store(fakeredis.FakeAsyncRedis(), prefix="inspect:")
    services: dict[str, Service] = {}
    for name, factory in WORKERS.items():
        publisher = Publisher(broker, worker=name, user_id=None, metrics=metrics)
        ctx = WorkerContext(name, settings, store, broker, publisher, metrics)
        services[name] = factory(ctx)
    return services


def consumed_types(settings: Settings | None = None) -> dict[str, list[str]]:
    """Worker name -> the event types its queue is bound to (built on inert parts)."""
    return {name: sorted(routes) for name, routes in worker_routes(settings).items()}


def worker_routes(settings: Settings | None = None) -> dict[str, dict[str, Route]]:
    """Worker name -> its routes by event type (built on inert parts)."""
    return {name: dict(service.router.routes) for name, service in inert_services(settings).items()}
