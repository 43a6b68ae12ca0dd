"""Quarantine events: requests to take an entity out of circulation, and the decisions."""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload, ShortText

__all__ = [
    "ENTITY_KINDS",
    "EVENTS",
    "EntityKind",
    "QuarantineDiscardRequested",
    "QuarantineEntryAdded",
    "QuarantineEntryDiscarded",
    "QuarantineEntryReleased",
    "QuarantineReleaseRefused",
    "QuarantineReleaseRequested",
    "QuarantineRequested",
    "RecordKind",
    "RefusalReason",
]

EntityKind = Literal["ai_model", "exchange_source", "producer", "strategy", "event_type"]
"""What can be blocked: the one type of entity kinds, in the schemas, the view and the worker."""
ENTITY_KINDS: Final[frozenset[str]] = frozenset(get_args(EntityKind))
RecordKind = Literal[EntityKind, "message"]
"""What a quarantine record holds: a blocked entity, or a dead message (recorded, never asked)."""
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
RecordId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Severity = Literal["info", "warning", "critical"]
EvidenceKey = Annotated[str, StringConstraints(max_length=100)]


class QuarantineRequested(Payload):
    """Take an entity out of circulation for ``ttl_s`` seconds (default: the quarantine worker's
    ``default_ttl_s``), or until released when ``permanent`` (only an admin actor may ask).
    ``kind`` is an entity kind: messages reach quarantine dead-lettered, never by request."""

    kind: EntityKind
    entity_id: EntityId
    reason: ShortText
    severity: Severity = "warning"
    evidence: Annotated[dict[EvidenceKey, ShortText], Field(max_length=50)] = {}
    ttl_s: Annotated[int, Field(ge=1, le=365 * 24 * 3600)] | None = None
    permanent: bool = False
    requested_by: Name


class QuarantineReleaseRequested(Payload):
    """An operator asks to release a record (re-publish a dead message, unblock an entity)."""

    record_id: RecordId
    note: ShortText = ""


class QuarantineDiscardRequested(Payload):
    """An operator asks to discard a dead message's record: it will never be re-published."""

    record_id: RecordId
    note: ShortText = ""


class _EntryEvent(Payload):
    record_id: RecordId
    kind: RecordKind
    entity_id: EntityId


class QuarantineEntryAdded(_EntryEvent):
    """An entity or message is now quarantined."""

    reason: ShortText
    severity: Severity = "warning"
    expires_at: Annotated[float, Field(ge=0)] | None = None


class QuarantineEntryReleased(_EntryEvent):
    """A record was released (by a reviewer or by expiry); a dead message was re-published
    with ``release_id`` in its ``x-eventguard-release-id`` header."""

    released_by: Name
    note: ShortText = ""
    release_id: RecordId | None = None


RefusalReason = Literal[
    "unknown_record",
    "already_released",
    "discarded",
    "in_progress",
    "no_destination",
    "not_a_message",
]


class QuarantineReleaseRefused(Payload):
    """The answer to a release (or discard) that changed nothing, and why."""

    record_id: RecordId
    reason: RefusalReason
    detail: ShortText = ""


class QuarantineEntryDiscarded(_EntryEvent):
    """A record was discarded by a reviewer."""

    discarded_by: Name
    note: ShortText = ""


EVENTS: dict[str, type[Payload]] = {
    "quarantine.requested": QuarantineRequested,
    "quarantine.release.requested": QuarantineReleaseRequested,
    "quarantine.discard.requested": QuarantineDiscardRequested,
    "quarantine.entry.added": QuarantineEntryAdded,
    "quarantine.entry.released": QuarantineEntryReleased,
    "quarantine.entry.discarded": QuarantineEntryDiscarded,
    "quarantine.release.refused": QuarantineReleaseRefused,
}
