"""Every worker's service built on inert parts (in-memory broker, fakeredis), never started:
for tests that read what a running service registers."""

from __future__ import annotations

import fakeredis
from prometheus_client import CollectorRegistry

from common.bus.memory import MemoryBroker
from common.bus.publisher import Publisher
from common.config import Settings
from common.metrics import Metrics
from common.service import Service, WorkerContext
from common.store import Store
from workers.registry import WORKERS

__all__ = ["inert_services"]


def inert_services(settings: Settings | None = None) -> dict[str, Service]:
    """Worker name -> its service (nothing started, nothing connected)."""
    settings = settings or Settings()
    metrics = Metrics(CollectorRegistry())
    broker = MemoryBroker()
    store = Store(fakeredis.FakeAsyncRedis(), prefix="inspect:")
    services: dict[str, Service] = {}
    for name, factory in WORKERS.items():
        publisher = Publisher(broker, worker=name, user_id=None, metrics=metrics)
        services[name] = factory(WorkerContext(name, settings, store, broker, publisher, metrics))
    return services
