"""The event catalogue: event type -> payload model, and typed envelope models per type."""

from __future__ import annotations

from functools import cache
from typing import Any

from schemas import ai, health, marketplace, opportunity, ops, quarantine
from schemas.envelope import Envelope, Payload

__all__ = ["CATALOGUE", "REPLIES", "envelope_model", "event_type_of", "is_known", "payload_model"]

CATALOGUE: dict[str, type[Payload]] = {
    **health.EVENTS,
    **quarantine.EVENTS,
    **ai.EVENTS,
    **opportunity.EVENTS,
    **marketplace.EVENTS,
    **ops.EVENTS,
}

# Payload model -> event type: each model names exactly one type (checked at import).
_TYPES: dict[type[Payload], str] = {model: event_type for event_type, model in CATALOGUE.items()}
if len(_TYPES) != len(CATALOGUE):  # pragma: no cover - a catalogue edit that breaks routing
    raise RuntimeError("a payload model is the data of two event types")

# Request/reply: the answers a requester with an AMQP reply_to gets back, by request type (a
# test checks the workers' routes against this table).
REPLIES: dict[str, tuple[str, ...]] = {
    "ai.completion.requested": ("ai.completion.succeeded", "ai.completion.failed"),
    "opportunity.scan.requested": ("opportunity.scan.completed",),
    "quarantine.release.requested": ("quarantine.entry.released", "quarantine.release.refused"),
    "quarantine.discard.requested": ("quarantine.entry.discarded", "quarantine.release.refused"),
    "ai.model.disable.requested": ("ai.model.disabled",),
    "ai.model.enable.requested": ("ai.model.enabled",),
    "health.silence.requested": ("health.silence.created",),
    "health.silence.expire.requested": ("health.silence.expired",),
}


def is_known(event_type: str) -> bool:
    """True when ``event_type`` is in the catalogue."""
    return event_type in CATALOGUE


def event_type_of(model: type[Payload]) -> str:
    """The event type whose payload is ``model`` (ValueError when it is not in the catalogue)."""
    try:
        return _TYPES[model]
    except KeyError:
        raise ValueError(f"{model.__name__} is not the payload of a catalogue type") from None


def payload_model(event_type: str) -> type[Payload]:
    """The payload model of ``event_type`` (KeyError when unknown)."""
    return CATALOGUE[event_type]


@cache
def envelope_model(event_type: str) -> type[Envelope[Any]]:
    """The envelope model whose ``data`` is ``event_type``'s payload (built once per type)."""
    model: type[Envelope[Any]] = Envelope[CATALOGUE[event_type]]  # type: ignore[valid-type]
    return model
