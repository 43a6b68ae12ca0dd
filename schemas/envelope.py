"""The event envelope: CloudEvents 1.0 attributes around a typed payload.

On the wire an event is the JSON of :class:`Envelope`. ``data`` is validated against the payload
model registered for ``type`` (see :mod:`schemas.registry`). Every model forbids unknown fields
and bounds every string, list and number.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)

__all__ = [
    "Actor",
    "Envelope",
    "EventType",
    "Name",
    "Payload",
    "ShortText",
    "Timestamp",
    "new_event",
]

_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
EventType = Annotated[str, StringConstraints(min_length=3, max_length=128, pattern=_TYPE_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=2_000)]
_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
EventId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_ID_PATTERN)]

SCHEMA_VERSION = "1"

# RFC 3339 date-time as JSON Schema checkers read it: seconds and an offset (T, Z any case).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


_LAX_TIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def _rfc3339(value: Any) -> Any:
    """On the wire a time is an RFC 3339 string with an offset (not epoch seconds, not a date
    without seconds); Python callers may pass a timezone-aware ``datetime``."""
    if isinstance(value, str):
        if not _RFC3339.fullmatch(value):
            raise ValueError("expected an RFC 3339 date-time with seconds and an offset")
        return _LAX_TIME.validate_python(value)  # strict mode takes only a datetime from here
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A timezone-aware time; from JSON, an RFC 3339 string only."""


class Payload(BaseModel):
    """Base of every event payload: strict about unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Actor(BaseModel):
    """On whose behalf the event runs: an identity, never a credential.

    A producer allowed to assert actors for the type (an ingress that verified the person's
    token itself) states who asked; consumers trust it because RabbitMQ validated that
    producer's ``user_id`` (see docs/actors.md). Unknown fields are refused, so a ``token``
    on the wire is a schema violation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: Name
    role: Literal["guest", "user", "operator", "admin", "service"]
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


DataT = TypeVar("DataT", bound=BaseModel)


class Envelope(BaseModel, Generic[DataT]):
    """One event: CloudEvents 1.0 attributes plus EventGuard's tracing and actor fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: EventId
    type: EventType
    source: Name
    time: Timestamp
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: Annotated[str, StringConstraints(max_length=300)] | None = None
    schema_version: Annotated[str, StringConstraints(max_length=16)] = SCHEMA_VERSION
    correlation_id: EventId | None = None
    causation_id: EventId | None = None
    actor: Actor | None = None
    data: DataT

    @model_validator(mode="before")
    @classmethod
    def _specversion_on_the_wire(cls, data: Any, info: ValidationInfo) -> Any:
        """Wire JSON states its specversion, as the exported schemas require; Python callers
        may leave it to the default."""
        if info.mode == "json" and isinstance(data, dict) and "specversion" not in data:
            raise ValueError("specversion is required")
        return data


def new_event(
    event_type: str,
    data: DataT,
    *,
    source: str,
    correlation_id: str | None = None,
    causation: Envelope[Any] | None = None,
    actor: Actor | None = None,
    event_id: str | None = None,
) -> Envelope[DataT]:
    """A fresh envelope; with ``causation`` it inherits the correlation id and records the cause."""
    eid = event_id or uuid.uuid4().hex
    if causation is not None:
        correlation_id = correlation_id or causation.correlation_id or causation.id
    model: type[Envelope[DataT]] = Envelope[type(data)]  # type: ignore[misc,assignment]
    return model(
        id=eid,
        type=event_type,
        source=source,
        time=datetime.now(UTC),
        dataschema=f"urn:eventguard:schema:{event_type}:{SCHEMA_VERSION}",
        correlation_id=correlation_id or eid,
        causation_id=causation.id if causation is not None else None,
        actor=actor if actor is not None else (causation.actor if causation else None),
        data=data,
    )
