"""Operators create and expire silences by events, through the same authorisation as any client.

* ``health.silence.requested`` (an operator or admin actor): a silence is written to the alert
  book's silence hash, its id taken from the request's event id (a redelivery writes the same
  silence again, never a second one); answered ``health.silence.created``.
* ``health.silence.expire.requested`` (idem): the silence is removed; answered
  ``health.silence.expired`` (``removed`` false when there was no such silence).

Any replica may handle a request (the work queue): the silences live in Redis, which the leader
re-reads at every evaluation, so the next round honours it wherever it was written. The admin
routes (``POST``/``DELETE /admin/health/silences``) write the same hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from common.bus.router import Emit, Router
from common.logging import get_logger
from common.security.actors import require_role
from schemas.envelope import Envelope, new_event
from schemas.health import (
    SilenceCreated,
    SilenceExpired,
    SilenceExpireRequested,
    SilenceRequested,
)
from workers.health_monitor.alerts import AlertBook

__all__ = ["OPERATOR_ROLES", "SilenceRequests", "silence_id_of"]

OPERATOR_ROLES = frozenset({"operator", "admin"})
_log = get_logger("eventguard.health_monitor")


def silence_id_of(event_id: str) -> str:
    """The id of the silence a request creates: the same for every copy of the request."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


class SilenceRequests:
    """The handlers of the silence requests."""

    def __init__(
        self, book: AlertBook, *, now: Callable[[], float], source: str = "health_monitor"
    ) -> None:
        self.book = book
        self.now = now
        self.source = source

    def register(self, router: Router) -> None:
        """Both requests, answered to the requester's ``reply_to`` too."""
        router.add(SilenceRequested, self.on_silence, reply=True)
        router.add(SilenceExpireRequested, self.on_expire, reply=True)

    async def on_silence(self, event: Envelope[SilenceRequested]) -> Emit:
        """Create the silence for an operator or admin."""
        by = require_role(event.actor, OPERATOR_ROLES, action="silencing alerts")
        now = self.now()
        request = event.data
        silence = await self.book.add_silence(
            dict(request.matchers), until=now + request.duration_s, by=by,
            comment=request.comment, now=now, silence_id=silence_id_of(event.id),
        )  # fmt: skip
        _log.info("health.silence_created", silence=silence.id, by=by)
        data = SilenceCreated(
            silence_id=silence.id, matchers=silence.matchers, created_by=by,
            expires_at=datetime.fromtimestamp(silence.expires_at, UTC), comment=silence.comment,
        )  # fmt: skip
        return [new_event("health.silence.created", data, source=self.source, causation=event)]

    async def on_expire(self, event: Envelope[SilenceExpireRequested]) -> Emit:
        """Expire the silence for an operator or admin."""
        by = require_role(event.actor, OPERATOR_ROLES, action="expiring a silence")
        removed = await self.book.remove_silence(event.data.silence_id)
        _log.info("health.silence_expired", silence=event.data.silence_id, by=by, removed=removed)
        data = SilenceExpired(silence_id=event.data.silence_id, expired_by=by, removed=removed)
        return [new_event("health.silence.expired", data, source=self.source, causation=event)]
