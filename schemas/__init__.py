"""Pydantic v2 event models: the envelope, one module per domain, and the catalogue."""

from schemas.envelope import Actor, Envelope, Payload, new_event
from schemas.registry import CATALOGUE, envelope_model, is_known, payload_model

__all__ = [
    "CATALOGUE",
    "Actor",
    "Envelope",
    "Payload",
    "envelope_model",
    "is_known",
    "new_event",
    "payload_model",
]
