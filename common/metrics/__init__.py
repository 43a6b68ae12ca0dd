"""Every Prometheus metric EventGuard exports, declared in one place.

Names follow Prometheus conventions (prefix ``eventguard_``, ``_total`` for counters, base units
such as ``_seconds``) and labels are bounded: worker, event type, outcome, dependency, reason,
never an id. Tests pass their own :class:`~prometheus_client.CollectorRegistry`.

Each concern owns one section class (:mod:`common.metrics.shared`, :mod:`common.metrics.workers`);
:class:`Metrics` holds them all.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from common.metrics.shared import ReliabilityMetrics, RuntimeMetrics, SecurityMetrics
from common.metrics.workers import (
    AiFallbackMetrics,
    HealthMonitorMetrics,
    OpportunityMetrics,
    QuarantineMetrics,
)

__all__ = ["Metrics"]


class Metrics:
    """All sections over one registry; pass ``registry`` in tests."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.runtime = RuntimeMetrics(self.registry)
        self.reliability = ReliabilityMetrics(self.registry)
        self.security = SecurityMetrics(self.registry)
        self.health_monitor = HealthMonitorMetrics(self.registry)
        self.opportunity = OpportunityMetrics(self.registry)
        self.ai_fallback = AiFallbackMetrics(self.registry)
        self.quarantine = QuarantineMetrics(self.registry)
