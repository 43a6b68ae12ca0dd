"""Every worker this distribution ships, by name (the CLI and the demo read this table)."""

from __future__ import annotations

from common.service import ServiceFactory
from workers import ai_fallback, health_monitor, opportunity_discovery, quarantine

__all__ = ["WORKERS"]

WORKERS: dict[str, ServiceFactory] = {
    "health_monitor": health_monitor.create,
    "quarantine": quarantine.create,
    "ai_fallback": ai_fallback.create,
    "opportunity_discovery": opportunity_discovery.create,
}
