"""Releasing and discarding records, exactly once.

A dead message is released by re-publishing it to its original exchange and routing key
with its original body and properties, the death headers removed (a fresh attempt count),
``x-eventguard-producer`` kept (the consuming pipeline trusts the relay to name the original
producer) and a release id in ``x-eventguard-release-id``. The steps:

1. one Lua step moves the record ``quarantined|under_review -> releasing`` and writes the
   release id and the requester (``owner``) in the same step. A second request finds
   ``releasing`` or ``released`` and is refused (``in_progress`` / ``already_released``);
   the same request redelivered (same owner) resumes instead;
2. publish with the broker's confirm;
3. one Lua step moves ``releasing -> released`` only if the release id still matches.

If the worker dies between 2 and 3, the record stays ``releasing`` with its release id. On
start, and every tick for releases older than ``release_lease_s``, :meth:`Releaser.resume`
publishes again with the SAME release id and finishes step 3. The second publish is
harmless: the message keeps its event id, the consuming pipeline claims event ids in Redis
and acks a duplicate without running it, and the runtime deleted the event's claim when it
dead-lettered it, so the released copy runs exactly once. What can therefore happen is at
most one extra broker copy after a crash, never a second effect, and never a lost release.

An entity's release (unblock) is a single Lua step that also removes it from the blacklist.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from common.bus.broker import Broker
from common.bus.message import OutgoingMessage
from common.logging import get_logger
from common.metrics import Metrics
from schemas.envelope import Envelope, Payload, new_event
from schemas.quarantine import (
    QuarantineEntryDiscarded,
    QuarantineEntryReleased,
    QuarantineReleaseRefused,
)
from workers.quarantine.records import ACTIVE, decode_headers, release_headers
from workers.quarantine.repository import Repository

__all__ = ["Outcome", "Releaser"]

_log = get_logger("eventguard.quarantine.release")
_REFUSALS = {
    "released": "already_released",
    "discarded": "discarded",
    "releasing": "in_progress",
    "missing": "unknown_record",
}


@dataclass(frozen=True)
class Outcome:
    """The result of a release or discard: the event to publish, and whether it changed."""

    changed: bool
    event: Envelope[Any]
    status: str

    @property
    def refusal(self) -> str | None:
        """The refusal reason when nothing changed."""
        data = self.event.data
        return data.reason if isinstance(data, QuarantineReleaseRefused) else None


def _kind(record: dict[str, Any]) -> str:
    return str(record.get("kind", "message"))


class Releaser:
    """Release, discard and review records; shared by the handlers, admin API, loop and CLI."""

    def __init__(
        self,
        repo: Repository,
        *,
        broker: Broker,
        user_id: str | None,
        metrics: Metrics,
        now: Callable[[], float],
        source: str = "quarantine",
    ) -> None:
        self.repo = repo
        self.broker = broker
        self.user_id = user_id
        self.now = now
        self.source = source
        self._m = metrics.quarantine

    def _event(
        self, event_type: str, data: Payload, causation: Envelope[Any] | None
    ) -> Envelope[Any]:
        return new_event(event_type, data, source=self.source, causation=causation)

    def _refused(
        self, record_id: str, previous: str, detail: str, causation: Envelope[Any] | None
    ) -> Outcome:
        reason = _REFUSALS.get(previous, "in_progress")
        data = QuarantineReleaseRefused(record_id=record_id, reason=reason, detail=detail[:2000])
        return Outcome(False, self._event("quarantine.release.refused", data, causation), previous)

    async def release(
        self,
        record_id: str,
        *,
        by: str,
        note: str = "",
        owner: str = "",
        causation: Envelope[Any] | None = None,
    ) -> Outcome:
        """Release ``record_id`` (re-publish a dead message, or unblock an entity)."""
        now = self.now()
        record = await self.repo.get(record_id)
        if record is None:
            return self._refused(record_id, "missing", f"no record {record_id!r}", causation)
        if _kind(record) != "message":
            return await self._release_entity(
                record, by=by, note=note, causation=causation, trigger="reviewer"
            )
        if not record.get("routing_key"):
            data = QuarantineReleaseRefused(
                record_id=record_id,
                reason="no_destination",
                detail="the dead message names no original routing key (no headers, no x-death)",
            )
            return Outcome(
                False, self._event("quarantine.release.refused", data, causation), record["status"]
            )
        release_id = uuid.uuid4().hex
        owner = owner or release_id
        begun = await self.repo.transition(
            record_id,
            "releasing",
            allowed=tuple(sorted(ACTIVE)),
            by=by,
            note=note,
            now=now,
            owner=owner,
            fields={"release_id": release_id, "release_owner": owner, "releasing_by": by},
            release_id=release_id,
        )
        if begun.outcome == "resume":
            release_id = begun.release_id
        elif begun.outcome != "ok":
            detail = f"record {record_id} is {begun.previous or 'unknown'}"
            return self._refused(record_id, begun.previous or "missing", detail, causation)
        return await self._publish_and_finish(
            record, release_id, by=by, note=note, causation=causation, trigger="reviewer"
        )

    async def resume(self, record_id: str) -> Outcome | None:
        """Finish a release left in ``releasing`` (by a crash or a failed publish), same id."""
        record = await self.repo.get(record_id)
        if record is None or record.get("status") != "releasing":
            return None
        release_id = str(record.get("release_id", ""))
        by = str(record.get("releasing_by", "recovery"))
        _log.info("quarantine.release_resumed", record_id=record_id, release_id=release_id)
        return await self._publish_and_finish(
            record,
            release_id,
            by=by,
            note="resumed after interruption",
            causation=None,
            trigger="recovery",
        )

    async def _publish_and_finish(
        self,
        record: dict[str, Any],
        release_id: str,
        *,
        by: str,
        note: str,
        causation: Envelope[Any] | None,
        trigger: str,
    ) -> Outcome:
        record_id = str(record["id"])
        await self.broker.publish(self._message(record, release_id))
        _log.info("quarantine.republished", record_id=record_id, release_id=release_id)
        done = await self.repo.transition(
            record_id,
            "released",
            allowed=("releasing",),
            by=by,
            note=note,
            now=self.now(),
            expect_release_id=release_id,
            fields={"released_at": repr(self.now())},
            release_id=release_id,
        )
        if done.outcome != "ok":
            # Someone else (a resumed copy) finished it and announced it.
            return self._refused(
                record_id, done.previous or "released", "finished elsewhere", causation
            )
        self._m.releases.labels("message", trigger).inc()
        data = QuarantineEntryReleased(
            record_id=record_id,
            kind="message",
            entity_id=str(record.get("entity_id") or record_id),
            released_by=by[:200] or "unknown",
            note=note[:2000],
            release_id=release_id,
        )
        return Outcome(True, self._event("quarantine.entry.released", data, causation), "released")

    def _message(self, record: dict[str, Any], release_id: str) -> OutgoingMessage:
        props = json.loads(record.get("props") or "{}")
        stamp = props.get("timestamp")
        return OutgoingMessage(
            body=record.get("body", b""),
            exchange=str(record["exchange"]),
            routing_key=str(record["routing_key"]),
            headers=release_headers(decode_headers(record.get("headers", "")), release_id),
            message_id=props.get("message_id"),
            type=props.get("type"),
            correlation_id=props.get("correlation_id"),
            reply_to=props.get("reply_to"),
            user_id=self.user_id,
            app_id=props.get("app_id"),
            timestamp=datetime.fromisoformat(stamp) if stamp else None,
            content_type=props.get("content_type"),
            content_encoding=props.get("content_encoding"),
        )

    async def _release_entity(
        self,
        record: dict[str, Any],
        *,
        by: str,
        note: str,
        causation: Envelope[Any] | None,
        trigger: str,
        expired_by: float | None = None,
    ) -> Outcome:
        record_id = str(record["id"])
        done = await self.repo.transition(
            record_id,
            "released",
            allowed=tuple(sorted(ACTIVE)),
            by=by,
            note=note,
            now=self.now(),
            expired_by=expired_by,
            fields={"released_at": repr(self.now())},
        )
        if done.outcome != "ok":
            return self._refused(
                record_id,
                done.previous or "missing",
                f"record {record_id} is {done.previous}",
                causation,
            )
        self._m.releases.labels(_kind(record), trigger).inc()
        data = QuarantineEntryReleased(
            record_id=record_id,
            kind=_kind(record),
            entity_id=str(record["entity_id"]),
            released_by=by[:200] or "unknown",
            note=note[:2000],
        )
        return Outcome(True, self._event("quarantine.entry.released", data, causation), "released")

    async def expire(self, record_id: str) -> Outcome | None:
        """Release an entity whose block has expired (checked again inside the Lua step)."""
        record = await self.repo.get(record_id)
        if record is None or record.get("status") not in ACTIVE:
            return None
        outcome = await self._release_entity(
            record,
            by="expiry",
            note="ttl expired",
            causation=None,
            trigger="expiry",
            expired_by=self.now(),
        )
        return outcome if outcome.changed else None

    async def discard(
        self, record_id: str, *, by: str, note: str = "", causation: Envelope[Any] | None = None
    ) -> Outcome:
        """Discard a dead message: it will never be re-published.

        An entity block is not discarded: it ends by release or expiry, the two events the
        other workers' views follow (a discarded block would stay blocked in every view).
        """
        record = await self.repo.get(record_id)
        if record is None:
            return self._refused(record_id, "missing", f"no record {record_id!r}", causation)
        if _kind(record) != "message":
            refusal = QuarantineReleaseRefused(
                record_id=record_id,
                reason="not_a_message",
                detail="an entity block ends by release or expiry; discard is for dead messages",
            )
            event = self._event("quarantine.release.refused", refusal, causation)
            return Outcome(False, event, str(record.get("status", "")))
        done = await self.repo.transition(
            record_id,
            "discarded",
            allowed=tuple(sorted(ACTIVE)),
            by=by,
            note=note,
            now=self.now(),
        )
        if done.outcome != "ok":
            return self._refused(
                record_id,
                done.previous or "missing",
                f"record {record_id} is {done.previous}",
                causation,
            )
        self._m.discards.labels(_kind(record)).inc()
        data = QuarantineEntryDiscarded(
            record_id=record_id,
            kind=_kind(record),
            entity_id=str(record.get("entity_id") or record_id),
            discarded_by=by[:200] or "unknown",
            note=note[:2000],
        )
        return Outcome(
            True, self._event("quarantine.entry.discarded", data, causation), "discarded"
        )

    async def review(self, record_id: str, *, by: str, note: str = "") -> str:
        """Take ``record_id`` under review; returns ``ok``, ``missing`` or the blocking status."""
        done = await self.repo.transition(
            record_id, "under_review", allowed=("quarantined",), by=by, note=note, now=self.now()
        )
        return "ok" if done.outcome == "ok" else (done.previous or "missing")
