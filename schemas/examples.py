"""One example event per catalogue type, for the exported JSON Schemas and AsyncAPI document.

Each example is a whole envelope as it travels on the wire; a test validates every one strictly
against its type (and against its exported JSON Schema), so the examples never drift.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from schemas.ai import (
    Attempt,
    CompletionFailed,
    CompletionRequested,
    CompletionSucceeded,
    Message,
    ModelDisabled,
    ModelDisableRequested,
    ModelEnabled,
    ModelEnableRequested,
)
from schemas.envelope import SCHEMA_VERSION, Envelope, Payload
from schemas.health import (
    AlertRaised,
    AlertResolved,
    Heartbeat,
    SilenceCreated,
    SilenceExpired,
    SilenceExpireRequested,
    SilenceRequested,
)
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import MissingPart, OpportunityFound, ScanCompleted, ScanRequested
from schemas.ops import AuditRecorded
from schemas.quarantine import (
    QuarantineDiscardRequested,
    QuarantineEntryAdded,
    QuarantineEntryDiscarded,
    QuarantineEntryReleased,
    QuarantineReleaseRefused,
    QuarantineReleaseRequested,
    QuarantineRequested,
)
from schemas.registry import envelope_model

__all__ = ["PAYLOADS", "example"]

_T0 = datetime(2026, 12, 1, 20, 30, tzinfo=UTC)
_FOUND = OpportunityFound(
    scan_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7",
    user_id="user-42",
    strategy="spot_arbitrage",
    symbol="BTC/USDT",
    venues=["binance", "bybit"],
    sides=["buy", "sell"],
    entry=97_120.5,
    exit=97_260.0,
    edge_bps=9.4,
    required_capital=1_000.0,
    confidence=0.72,
    risk="low",
    expected_value=0.94,
    data_time=_T0,
    staleness_s=0.8,
)
_ATTEMPT = Attempt(model="gpt-4o-mini", outcome="ok", latency_ms=412.0)

PAYLOADS: dict[str, Payload] = {
    "health.heartbeat": Heartbeat(
        worker="ai_fallback", instance="ai-fallback-7d9c", started_at=_T0, uptime_s=3600.0,
        messages_per_s=12.5, error_rate=0.01, latency_p50_s=0.4, latency_p99_s=2.1,
        in_flight=3, consumers=1, breakers={"redis": "closed"},
        entity_error_rates={"ai_model:gpt-4o-mini": 0.02},
    ),
    "health.alert.raised": AlertRaised(
        fingerprint="a1b2c3d4", rule="ModelErrorRate", severity="critical",
        labels={"entity_kind": "ai_model", "entity_id": "gpt-4o-mini"},
        summary="gpt-4o-mini fails 40% of calls", entity_kind="ai_model",
        entity_id="gpt-4o-mini", quarantine=True, value=0.4, started_at=_T0,
    ),
    "health.alert.resolved": AlertResolved(
        fingerprint="a1b2c3d4", rule="ModelErrorRate", severity="critical",
        entity_kind="ai_model", entity_id="gpt-4o-mini", resolved_at=_T0,
    ),
    "quarantine.requested": QuarantineRequested(
        kind="ai_model", entity_id="gpt-4o-mini", reason="answers garbage since 20:00",
        severity="warning", ttl_s=3600, requested_by="alice",
    ),
    "quarantine.release.requested": QuarantineReleaseRequested(
        record_id="9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e", note="fixed upstream",
    ),
    "quarantine.entry.added": QuarantineEntryAdded(
        record_id="9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e", kind="ai_model",
        entity_id="gpt-4o-mini", reason="answers garbage since 20:00", severity="warning",
        expires_at=1_796_160_301.0,
    ),
    "quarantine.entry.released": QuarantineEntryReleased(
        record_id="9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e", kind="message",
        entity_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7", released_by="alice",
        note="fixed upstream", release_id="r-5e6f7a8b",
    ),
    "quarantine.entry.discarded": QuarantineEntryDiscarded(
        record_id="9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e", kind="message",
        entity_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7", discarded_by="alice", note="test junk",
    ),
    "ops.audit.recorded": AuditRecorded(
        subject="alice", role="operator", auth="token", action="quarantine.release",
        method="POST", route="/admin/quarantine/records/{record_id}/release",
        target={"record_id": "9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e"}, outcome="ok", status=202,
        at=_T0, worker="quarantine",
    ),
    "quarantine.discard.requested": QuarantineDiscardRequested(
        record_id="9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e", note="test junk, not worth replaying",
    ),
    "quarantine.release.refused": QuarantineReleaseRefused(
        record_id="9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e", reason="already_released",
    ),
    "ai.model.disable.requested": ModelDisableRequested(
        model="gpt-4o-mini", note="provider incident INC-311: keep traffic off it",
    ),
    "ai.model.disabled": ModelDisabled(
        model="gpt-4o-mini", disabled_by="alice", note="provider incident INC-311", changed=True,
    ),
    "ai.model.enable.requested": ModelEnableRequested(model="gpt-4o-mini", note="INC-311 over"),
    "ai.model.enabled": ModelEnabled(
        model="gpt-4o-mini", enabled_by="alice", note="INC-311 over", lifted=True,
    ),
    "health.silence.requested": SilenceRequested(
        matchers={"alertname": "WorkerDown", "worker": "opportunity_discovery"},
        duration_s=3600, comment="planned restart of the scanner nodes",
    ),
    "health.silence.created": SilenceCreated(
        silence_id="5e2f0a9c1b3d4e6f", matchers={"alertname": "WorkerDown"},
        expires_at=_T0, created_by="alice", comment="planned restart",
    ),
    "health.silence.expire.requested": SilenceExpireRequested(silence_id="5e2f0a9c1b3d4e6f"),
    "health.silence.expired": SilenceExpired(
        silence_id="5e2f0a9c1b3d4e6f", expired_by="alice", removed=True,
    ),
    "ai.completion.requested": CompletionRequested(
        messages=[Message(role="user", content="Summarise this ticket in one line.")],
        max_tokens=64, temperature=0.2, tenant="support",
    ),
    "ai.completion.succeeded": CompletionSucceeded(
        request_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7", model="gpt-4o-mini",
        content="Customer cannot log in after the password reset.", finish_reason="stop",
        input_tokens=42, output_tokens=11, cost_usd=0.00002, attempts=[_ATTEMPT],
    ),
    "ai.completion.failed": CompletionFailed(
        request_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7", reason="all_models_failed",
        detail="every model in the chain failed", attempts=[
            Attempt(model="gpt-4o-mini", outcome="timeout", latency_ms=30_000.0),
        ],
    ),
    "opportunity.scan.requested": ScanRequested(
        user_id="user-42", strategies=["spot_arbitrage"], symbols=["BTC/USDT"], max_results=10,
    ),
    "opportunity.found": _FOUND,
    "opportunity.scan.completed": ScanCompleted(
        scan_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7", user_id="user-42", status="partial",
        found=1, top=[_FOUND], partial=True, duration_s=1.9,
        missing=[MissingPart(strategy="spot_arbitrage", venue="kraken", reason="venue timeout")],
    ),
    "marketplace.strategy.purchased": StrategyPurchased(
        user_id="user-42", strategy="spot_arbitrage", expires_at=datetime(2027, 1, 1, tzinfo=UTC),
    ),
    "marketplace.strategy.revoked": StrategyRevoked(
        user_id="user-42", strategy="spot_arbitrage", reason="refunded",
    ),
}  # fmt: skip


def example(event_type: str) -> dict[str, Any]:
    """The example envelope of ``event_type``, as wire JSON decoded."""
    data = PAYLOADS[event_type]
    envelope: Envelope[Any] = envelope_model(event_type)(
        id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7",  # pragma: allowlist secret (an example event id)
        type=event_type,
        source="chat" if event_type.endswith("requested") else event_type.partition(".")[0],
        time=_T0,
        dataschema=f"urn:eventguard:schema:{event_type}:{SCHEMA_VERSION}",
        correlation_id="3f2a9c1e7b6d4e58a0c1d2e3f4a5b6c7",
        data=data,
    )
    decoded: dict[str, Any] = json.loads(envelope.model_dump_json(exclude_none=True))
    return decoded
