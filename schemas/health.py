"""Health events: heartbeats from every worker, alerts from health_monitor, and silences that
operators ask health_monitor to create and expire."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload, ShortText, Timestamp
from schemas.quarantine import EntityKind

__all__ = [
    "EVENTS",
    "MAX_SILENCE_S",
    "AlertRaised",
    "AlertResolved",
    "Heartbeat",
    "Severity",
    "SilenceCreated",
    "SilenceExpireRequested",
    "SilenceExpired",
    "SilenceRequested",
]

Severity = Literal["info", "warning", "critical"]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Ratio = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
LabelValue = Annotated[str, StringConstraints(max_length=200)]
MAX_SILENCE_S = 30 * 24 * 3600
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
SilenceId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Matchers = Annotated[dict[LabelName, LabelValue], Field(min_length=1, max_length=20)]
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


class SilenceRequested(Payload):
    """Mute alerts whose labels (and rule, as ``alertname``) match every matcher, for
    ``duration_s`` seconds (at most 30 days); health_monitor creates it for an operator."""

    matchers: Matchers
    duration_s: Annotated[float, Field(gt=0, le=MAX_SILENCE_S, allow_inf_nan=False)]
    comment: ShortText = ""


class SilenceExpireRequested(Payload):
    """End a silence now."""

    silence_id: SilenceId


class SilenceCreated(Payload):
    """The answer to ``health.silence.requested``: the silence as stored (its id comes from the
    request's event id, so a redelivered request creates nothing twice)."""

    silence_id: SilenceId
    matchers: Matchers
    expires_at: Timestamp
    created_by: Name
    comment: ShortText = ""


class SilenceExpired(Payload):
    """The answer to ``health.silence.expire.requested`` (``removed`` false: no such silence)."""

    silence_id: SilenceId
    expired_by: Name
    removed: bool


EVENTS: dict[str, type[Payload]] = {
    "health.heartbeat": Heartbeat,
    "health.alert.raised": AlertRaised,
    "health.alert.resolved": AlertResolved,
    "health.silence.requested": SilenceRequested,
    "health.silence.expire.requested": SilenceExpireRequested,
    "health.silence.created": SilenceCreated,
    "health.silence.expired": SilenceExpired,
}
