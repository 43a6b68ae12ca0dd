"""Health events: heartbeats from every worker, alerts from health_monitor."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload, ShortText, Timestamp
from schemas.quarantine import EntityKind

__all__ = ["EVENTS", "AlertRaised", "AlertResolved", "Heartbeat", "Severity"]

Severity = Literal["info", "warning", "critical"]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
LabelValue = Annotated[str, StringConstraints(max_length=200)]
BreakerState = Literal["closed", "half_open", "open", "forced_open", "disabled"]


class Heartbeat(Payload):
    """A worker's vital signs, published every N seconds."""

    worker: Name
    instance: Name
    started_at: Timestamp
    uptime_s: NonNegative
    messages_per_s: NonNegative = 0.0
    error_rate: Ratio = 0.0
    latency_p50_s: NonNegative = 0.0
    latency_p99_s: NonNegative = 0.0
    in_flight: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    consumers: Annotated[int, Field(ge=0, le=10_000)] = 0
    paused: bool = False
    breakers: Annotated[dict[LabelValue, BreakerState], Field(max_length=200)] = {}
    # Per-entity error rates (e.g. "ai_model:gpt-x" -> 0.4) that rules can alert on.
    entity_error_rates: Annotated[dict[LabelValue, Ratio], Field(max_length=500)] = {}


class _AlertBase(Payload):
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    rule: Name
    severity: Severity
    labels: Annotated[dict[LabelValue, LabelValue], Field(max_length=50)] = {}
    summary: ShortText = ""
    # The entity the alert is about, when there is one (kind, id), for quarantine.
    entity_kind: EntityKind | None = None
    entity_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    quarantine: bool = False


class AlertRaised(_AlertBase):
    """An alert started firing or changed severity."""

    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    started_at: Timestamp
    runbook_url: Annotated[str, StringConstraints(max_length=500)] | None = None


class AlertResolved(_AlertBase):
    """An alert stopped firing after its condition stayed clear for its window."""

    resolved_at: Timestamp


EVENTS: dict[str, type[Payload]] = {
    "health.heartbeat": Heartbeat,
    "health.alert.raised": AlertRaised,
    "health.alert.resolved": AlertResolved,
}
