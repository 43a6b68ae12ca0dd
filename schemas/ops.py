"""Operations events: the audit trail of the admin API.

``ops.audit.recorded`` is published by the worker that served a state-changing admin call
(release, discard, block, silence, token revoke, ...), whatever its outcome, and by the console
for each action it publishes for a signed-in person (``auth`` ``session``, ``worker``
``console``); the quarantine
worker keeps it in Redis for ``quarantine.audit_retention_s`` (30 days) and serves it at
``GET /admin/audit``. It carries who (the verified subject and role, and how they proved it),
what (action, route, the route's path parameters), when, and the outcome; never a body, a
header or a credential.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.envelope import Name, Payload, Timestamp

__all__ = ["EVENTS", "AuditRecorded"]

_Short = Annotated[str, StringConstraints(max_length=200)]


class AuditRecorded(Payload):
    """One state-changing admin call and its outcome."""

    subject: Name
    role: Annotated[str, StringConstraints(max_length=32)]
    auth: Literal["token", "api_key", "session", "none"]
    action: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    method: Literal["POST", "PUT", "PATCH", "DELETE"]
    route: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    target: dict[Annotated[str, StringConstraints(max_length=40)], _Short] = Field(
        default_factory=dict, max_length=8
    )
    outcome: Literal["ok", "refused", "error"]
    status: int = Field(ge=100, le=599)
    at: Timestamp
    worker: Name


EVENTS: dict[str, type[Payload]] = {"ops.audit.recorded": AuditRecorded}
