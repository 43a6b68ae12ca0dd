"""Every worker this distribution ships, by name, with what it consumes and publishes as data
(the CLI, the demo, the topology and the schema exports read these tables; nothing is started
to find out)."""

from __future__ import annotations

from common.service import ServiceFactory
from schemas.envelope import Payload
from schemas.registry import event_type_of
from workers import ai_fallback, health_monitor, opportunity_discovery, quarantine

__all__ = ["CONSUMES", "PUBLISHES", "WORKERS", "consumed_types", "published_types"]

WORKERS: dict[str, ServiceFactory] = {
    "health_monitor": health_monitor.create,
    "quarantine": quarantine.create,
    "ai_fallback": ai_fallback.create,
    "opportunity_discovery": opportunity_discovery.create,
}
CONSUMES: dict[str, tuple[type[Payload], ...]] = {
    "health_monitor": health_monitor.CONSUMES,
    "quarantine": quarantine.CONSUMES,
    "ai_fallback": ai_fallback.CONSUMES,
    "opportunity_discovery": opportunity_discovery.CONSUMES,
}
PUBLISHES: dict[str, tuple[type[Payload], ...]] = {
    "health_monitor": health_monitor.PUBLISHES,
    "quarantine": quarantine.PUBLISHES,
    "ai_fallback": ai_fallback.PUBLISHES,
    "opportunity_discovery": opportunity_discovery.PUBLISHES,
}


def _types(table: dict[str, tuple[type[Payload], ...]]) -> dict[str, list[str]]:
    return {name: sorted({event_type_of(m) for m in models}) for name, models in table.items()}


def consumed_types() -> dict[str, list[str]]:
    """Worker name -> the event types its queue is bound to, sorted."""
    return _types(CONSUMES)


def published_types() -> dict[str, list[str]]:
    """Worker name -> the event types its AMQP user may publish, sorted."""
    return _types(PUBLISHES)
