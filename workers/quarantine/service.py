"""The quarantine worker: dead letters and misbehaving entities, recorded, reviewed, released.

Inputs:

* ``eventguard.dead`` (raw): every dead message, recorded byte for byte under a deterministic
  id (a redelivery never makes a second record), counted per producer and per event type so
  a flood quarantines its producer or type. The message is acked once its record is written;
  its ``quarantine.entry.added`` goes out through a Redis outbox written in the same step
  (see :mod:`workers.quarantine.housekeeping`), so the dead queue drains at Redis speed;
* ``quarantine.requested``: block an entity (TTL, or permanent for an admin actor);
* ``quarantine.release.requested``: release a record (operator or admin actor only);
* ``quarantine.discard.requested``: discard a dead message's record (idem);
* ``health.alert.raised`` with ``quarantine: true`` and severity critical: block the entity
  the alert names for ``alert_ttl_s`` (how health_monitor cooperates with this worker);
* ``ops.audit.recorded``: the admin audit trail of the whole fleet, kept for
  ``audit_retention_s`` and served at ``GET /admin/audit`` (see :mod:`workers.quarantine.audit`).

Background work (:mod:`workers.quarantine.housekeeping`, started in :meth:`start`, cancelled
in :meth:`stop`) releases expired blocks with ``quarantine.entry.released``, finishes
interrupted releases (see :mod:`workers.quarantine.release`), refreshes the gauges,
re-announces active blocks so workers deployed later learn them, and drains the outbox. Its
clock is injectable (``create`` uses the wall clock; tests pass their own).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from common.bus.message import IncomingMessage
from common.bus.router import Emit, RawHandler
from common.bus.topology import DEAD_QUEUE
from common.errors import Reject
from common.logging import get_logger
from common.security.admission import requester
from common.security.redaction import redact, redact_text
from common.service import AdminRoute, BaseService, WorkerContext
from schemas.envelope import Envelope
from schemas.health import AlertRaised
from schemas.ops import AuditRecorded
from schemas.quarantine import (
    EntityKind,
    QuarantineDiscardRequested,
    QuarantineReleaseRequested,
    QuarantineRequested,
)
from workers.quarantine import admin
from workers.quarantine.audit import AuditTrail
from workers.quarantine.authz import ADMIN_ROLES, RELEASE_ROLES, require_role
from workers.quarantine.housekeeping import Housekeeping
from workers.quarantine.records import ACTIVE, dead_message_from, entry_added
from workers.quarantine.release import Outcome, Releaser
from workers.quarantine.repository import Repository
from workers.quarantine.scrub import scrub

__all__ = ["QuarantineService"]

_log = get_logger("eventguard.quarantine")
_OWN_EVENTS = frozenset(
    {
        "quarantine.entry.added",
        "quarantine.entry.released",
        "quarantine.entry.discarded",
        "quarantine.release.refused",
    }
)


def _entity_record_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class QuarantineService(BaseService):
    """Records dead messages and blocked entities in Redis and releases them on request."""

    name = "quarantine"

    def __init__(self, ctx: WorkerContext, *, now: Callable[[], float] = time.time) -> None:
        super().__init__(ctx, now=now)
        self.settings = ctx.settings.quarantine
        self.now = now
        self.repo = Repository(ctx.store)
        self.publisher = ctx.publisher
        self.releaser = Releaser(
            self.repo,
            broker=ctx.broker,
            user_id=ctx.publisher.user_id,
            metrics=ctx.metrics,
            now=now,
            source=ctx.name,
        )
        self._m = ctx.metrics.quarantine
        self.housekeeping = Housekeeping(
            repo=self.repo,
            releaser=self.releaser,
            publisher=ctx.publisher,
            settings=self.settings,
            metrics=ctx.metrics,
            now=now,
            source=ctx.name,
        )
        self.router.add(QuarantineRequested, self.on_requested)
        self.router.add(QuarantineReleaseRequested, self.on_release_requested, reply=True)
        self.router.add(QuarantineDiscardRequested, self.on_discard_requested, reply=True)
        self.router.add(AlertRaised, self.on_alert)
        self.audit = AuditTrail(ctx.store, retention_s=self.settings.audit_retention_s, now=now)
        self.router.add(AuditRecorded, self.on_audit)

    # -- lifecycle -----------------------------------------------------------------------------

    def raw_consumers(self) -> Mapping[str, RawHandler]:
        """Everything dead-lettered lands in ``eventguard.dead``."""
        return {DEAD_QUEUE: self.on_dead}

    def admin_routes(self) -> Sequence[AdminRoute]:
        """List, show, review, release, discard, extend, block (see :mod:`.admin`), and the
        audit trail (see :mod:`.audit`)."""
        return [*admin.routes(self), self.audit.route()]

    async def start(self) -> None:
        """Finish releases a previous process left half done, then start the background tasks."""
        await self.housekeeping.start()

    async def stop(self) -> None:
        """Stop the background tasks."""
        await self.housekeeping.stop()

    # -- reads that honour expiry -------------------------------------------------------------

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """A record; an entity whose TTL passed is released first (reads check expiry)."""
        record = await self.repo.get(record_id)
        if record is None:
            return None
        expires = record.get("expires_at") or ""
        if record.get("status") in ACTIVE and expires and float(expires) <= self.now():
            outcome = await self.releaser.expire(record_id)
            if outcome is not None:
                await self.ctx.publisher.publish(outcome.event)
            record = await self.repo.get(record_id)
        return record

    async def is_blocked(self, kind: str, entity_id: str) -> bool:
        """True when ``kind``/``entity_id`` is blocked now (expiry honoured)."""
        record_id = await self.repo.blocked_record(kind, entity_id)
        if record_id is None:
            return False
        record = await self.get(record_id)
        return record is not None and record.get("status") in ACTIVE

    # -- the audit trail -----------------------------------------------------------------------

    async def on_audit(self, event: Envelope[AuditRecorded]) -> None:
        """Keep one ``ops.audit.recorded`` for the retention period."""
        await self.audit.add(event)

    # -- dead letters --------------------------------------------------------------------------

    async def on_dead(self, message: IncomingMessage) -> Emit:
        """Record one dead message; contain a flood from its producer or of its type."""
        dead = scrub(dead_message_from(message), self.settings.secret_fields)
        now = self.now()
        s = self.settings
        # A dead event of our own is recorded but not announced: the announcement could be
        # dead-lettered by the same consumer again, and so on, in a loop.
        announce = dead.event_type not in _OWN_EVENTS
        found = await self.repo.add_dead(
            dead, now=now, window_s=s.flood_window_s, announce=announce
        )
        out: list[Envelope[Any]] = []
        if found.created:
            self._m.added.labels("message", dead.reason).inc()
            if announce:
                self.housekeeping.wake()  # the outbox announcer publishes quarantine.entry.added
            else:
                _log.warning("quarantine.dead_quarantine_event", record_id=dead.record_id)
            _log.info("quarantine.dead_recorded", record_id=dead.record_id, reason=dead.reason)
        window = str(int(now // s.flood_window_s))
        if (
            dead.producer
            and found.producer_count >= s.flood_producer_threshold
            and not found.producer_blocked
        ):
            out += await self._contain("producer", dead.producer, found.producer_count, window, now)
        if (
            dead.event_type
            and found.type_count >= s.flood_type_threshold
            and not found.type_blocked
        ):
            out += await self._contain("event_type", dead.event_type, found.type_count, window, now)
        return out

    async def _contain(
        self, kind: EntityKind, entity_id: str, count: int, window: str, now: float
    ) -> list[Envelope[Any]]:
        record_id = _entity_record_id("flood", kind, entity_id, window)
        evidence = {"dead_letters": str(count), "window_s": str(self.settings.flood_window_s)}
        outcome, added = await self._block(
            record_id=record_id,
            kind=kind,
            entity_id=entity_id,
            reason="flood",
            detail=f"{count} dead letters within {self.settings.flood_window_s}s",
            severity="critical",
            evidence=evidence,
            requested_by=self.name,
            ttl_s=self.settings.flood_ttl_s,
            now=now,
            causation=None,
        )
        if outcome != "created":
            # A concurrent dead letter of the same flood got there first and announced it.
            return []
        if added:
            self._m.floods.labels(kind).inc()
            _log.warning(
                "quarantine.flood_contained", kind=kind, entity=entity_id[:200], count=count
            )
        return added

    # -- entities ------------------------------------------------------------------------------

    async def _block(
        self,
        *,
        record_id: str,
        kind: EntityKind,
        entity_id: str,
        reason: str,
        detail: str,
        severity: str,
        evidence: Mapping[str, str],
        requested_by: str,
        ttl_s: int | None,
        now: float,
        causation: Envelope[Any] | None,
    ) -> tuple[str, list[Envelope[Any]]]:
        result = await self.repo.add_entity(
            record_id=record_id,
            kind=kind,
            entity_id=entity_id,
            reason=reason,
            detail=redact_text(detail),  # free text from a request: no credential is kept
            severity=severity,
            evidence=redact(dict(evidence)),
            requested_by=requested_by,
            expires_at=None if ttl_s is None else now + ttl_s,
            now=now,
        )
        if result.outcome == "created":
            self._m.added.labels(kind, reason).inc()
        record = await self.repo.get(result.record_id)
        if record is None:  # released between the two steps: nothing to announce
            return result.outcome, []
        return result.outcome, [self.added_event(record, causation)]

    def added_event(self, record: dict[str, Any], causation: Envelope[Any] | None) -> Envelope[Any]:
        """``quarantine.entry.added`` for ``record``."""
        return entry_added(record, source=self.name, causation=causation)

    async def on_requested(self, event: Envelope[QuarantineRequested]) -> Emit:
        """Block an entity; a permanent block needs an admin actor."""
        data = event.data
        # Who asked, from the admitted identity (the actor, else the producer), never the
        # payload's ``requested_by``.
        requested_by = requester(event).subject
        if data.permanent:
            requested_by = await self._require(event, ADMIN_ROLES, "a permanent block")
        ttl = None if data.permanent else (data.ttl_s or self.settings.default_ttl_s)
        _, added = await self._block(
            record_id=_entity_record_id("request", event.id),
            kind=data.kind,
            entity_id=data.entity_id,
            reason="requested",
            detail=data.reason,
            severity=data.severity,
            evidence=data.evidence,
            requested_by=requested_by,
            ttl_s=ttl,
            now=self.now(),
            causation=event,
        )
        return added

    async def on_alert(self, event: Envelope[AlertRaised]) -> Emit:
        """A critical alert marked ``quarantine`` blocks the entity it names."""
        data = event.data
        if not data.quarantine or data.severity != "critical":
            return []
        if data.entity_kind is None or not data.entity_id:
            _log.warning("quarantine.alert_without_entity", rule=data.rule, kind=data.entity_kind)
            return []
        _, added = await self._block(
            record_id=_entity_record_id("alert", data.fingerprint, data.started_at.isoformat()),
            kind=data.entity_kind,
            entity_id=data.entity_id,
            reason="health_alert",
            detail=f"{data.rule}: {data.summary}"[:2000],
            severity="critical",
            evidence={k[:100]: v for k, v in list(data.labels.items())[:40]}
            | {"fingerprint": data.fingerprint, "value": str(data.value)},
            requested_by=requester(event).subject,  # the admitted producer, not ``source``
            ttl_s=self.settings.alert_ttl_s,
            now=self.now(),
            causation=event,
        )
        return added

    # -- releases ------------------------------------------------------------------------------

    async def _require(self, event: Envelope[Any], roles: frozenset[str], action: str) -> str:
        try:
            return require_role(event.actor, roles, action=action)
        except Reject:
            self.ctx.metrics.security.denials.labels("event", "role").inc()
            raise

    async def on_release_requested(self, event: Envelope[QuarantineReleaseRequested]) -> Emit:
        """Release a record for an operator or admin; anything else is dead-lettered.

        An actor without the role is refused by dead-lettering the request with reason
        ``unauthorized`` (it can never succeed, and the refusal is then itself on record).
        A release that changes nothing (unknown, already released, discarded, in progress)
        answers with ``quarantine.release.refused``, also sent to ``reply_to``.
        """
        by = await self._require(event, RELEASE_ROLES, "releasing a quarantine record")
        outcome: Outcome = await self.releaser.release(
            event.data.record_id,
            by=by,
            note=event.data.note,
            owner=event.id,
            causation=event,
        )
        return [outcome.event]

    async def on_discard_requested(self, event: Envelope[QuarantineDiscardRequested]) -> Emit:
        """Discard a dead message's record for an operator or admin, as a release is decided:
        ``quarantine.entry.discarded``, or ``quarantine.release.refused`` saying why not."""
        by = await self._require(event, RELEASE_ROLES, "discarding a quarantine record")
        outcome = await self.releaser.discard(
            event.data.record_id, by=by, note=event.data.note, causation=event
        )
        return [outcome.event]
