"""The health alert raised when a provider refuses a model's credentials, and its resolution."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.health import AlertRaised, AlertResolved
from workers.ai_fallback.chain import Model

__all__ = ["auth_alert", "auth_resolved"]

RULE = "ai_provider_auth_failed"


def _fingerprint(model: Model) -> str:
    return f"ai_fallback:auth:{model.name}"[:128]


def auth_alert(model: Model, detail: str) -> AlertRaised:
    """Critical: the model is disabled until its configuration changes."""
    return AlertRaised(
        fingerprint=_fingerprint(model),
        rule=RULE,
        severity="critical",
        labels={"model": model.name, "provider": model.spec.provider},
        summary=(
            f"{model.name} refused our credentials ({detail[:200]}); disabled until its "
            "configuration changes"
        ),
        entity_kind="ai_model",
        entity_id=model.name,
        started_at=datetime.now(UTC),
    )


def auth_resolved(model: Model) -> AlertResolved:
    """The model's configuration changed since it was disabled; it is enabled again."""
    return AlertResolved(
        fingerprint=_fingerprint(model),
        rule=RULE,
        severity="critical",
        labels={"model": model.name, "provider": model.spec.provider},
        summary=f"{model.name}'s configuration changed; it is enabled again",
        entity_kind="ai_model",
        entity_id=model.name,
        resolved_at=datetime.now(UTC),
    )
