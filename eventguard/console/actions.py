"""What the console does: it publishes events, like every other client.

A release is ``quarantine.release.requested`` (a discard ``quarantine.discard.requested``) with
the signed-in person as the ``actor``; the
quarantine worker decides, with its exactly-once release machinery (a record moves
``quarantined -> releasing -> released`` in Lua steps; a second request for the same record is
refused ``in_progress`` or ``already_released``; a discard is one Lua step from
``quarantined|under_review``). So two operators pressing at once, or a group job overlapping a
single request, release or discard each record once.

The console is an ingress (docs/actors.md): it signs the person in (a token or an API key turned
into a server-side session), then asserts the session's subject and role as the event's
``actor``; no credential travels in the event. The workers trust that actor because RabbitMQ
checked that the message comes from the console's user, and the actor policy lets that user
assert operators and admins on the quarantine requests.

A group job publishes one request per member in batches and records its progress in Redis
(``console:job:<id>``: total, published, the member ids); the page polls the members' statuses,
so the count shown is what the quarantine worker actually released.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

from common.bus.publisher import Publisher
from common.logging import get_logger
from common.quarantine_view import ENTITY_KINDS
from common.store import Store
from eventguard.console.auth import Viewer
from schemas.envelope import Actor, new_event
from schemas.quarantine import (
    QuarantineDiscardRequested,
    QuarantineReleaseRequested,
    QuarantineRequested,
)

__all__ = ["Actions", "Job"]

_log = get_logger("eventguard.console.actions")
_JOB_TTL_S = 24 * 3600
_BATCH = 100
_FINAL = frozenset({"released", "discarded", ""})
_REQUESTS: dict[str, type[QuarantineReleaseRequested] | type[QuarantineDiscardRequested]] = {
    "release": QuarantineReleaseRequested,
    "discard": QuarantineDiscardRequested,
}


@dataclass(frozen=True)
class Job:
    """A group action: what it covers and how far it got."""

    id: str
    action: str
    label: str
    by: str
    total: int
    published: int
    members: list[str]


class Actions:
    """Publishes requests on behalf of signed-in people; runs group jobs."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        store: Store,
    ) -> None:
        self.publisher = publisher
        self.store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def actor(self, viewer: Viewer) -> Actor:
        """The actor for ``viewer``: the signed-in identity, asserted by the console's user."""
        return Actor(subject=viewer.subject[:200], role=viewer.role.value)

    async def request(self, action: str, viewer: Viewer, record_id: str, note: str = "") -> str:
        """Ask the quarantine worker to ``release`` or ``discard`` ``record_id``; returns the
        request's event id."""
        model = _REQUESTS[action]
        event = new_event(
            f"quarantine.{action}.requested",
            model(record_id=record_id, note=note[:500]),
            source="console",
            actor=self.actor(viewer),
        )
        await self.publisher.publish(event)
        _log.info(f"console.{action}_requested", record_id=record_id, subject=viewer.subject[:200])
        return event.id

    async def block(
        self, viewer: Viewer, *, kind: str, entity_id: str, reason: str, ttl_s: int | None
    ) -> str:
        """Ask the quarantine worker to block an entity for ``ttl_s`` (None: permanently).

        ValueError (pydantic's) for a kind or id the event contract does not accept.
        """
        if kind not in ENTITY_KINDS:
            raise ValueError(f"only entities are blocked ({', '.join(sorted(ENTITY_KINDS))})")
        data = QuarantineRequested.model_validate(
            {
                "kind": kind, "entity_id": entity_id, "reason": reason[:500] or "blocked",
                "severity": "warning", "ttl_s": ttl_s, "permanent": ttl_s is None,
                "requested_by": viewer.subject[:200],
            }
        )  # fmt: skip
        event = new_event(
            "quarantine.requested", data, source="console", actor=self.actor(viewer)
        )
        await self.publisher.publish(event)
        _log.info("console.block_requested", kind=kind, subject=viewer.subject[:200])
        return event.id

    # -- group jobs ------------------------------------------------------------------------

    def _job_key(self, job_id: str) -> str:
        return self.store.key("console", "job", job_id)

    async def start_group(
        self, action: str, viewer: Viewer, label: str, members: list[str]
    ) -> str:
        """Record a job for ``members`` and publish their requests in the background."""
        if action not in _REQUESTS:
            raise ValueError(f"unknown action {action!r}")
        job_id = secrets.token_hex(8)
        key = self._job_key(job_id)
        facts = {
            "action": action, "label": label[:300], "by": viewer.subject[:200],
            "total": str(len(members)), "published": "0", "members": json.dumps(members),
        }  # fmt: skip

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=facts)
                pipe.expire(key, _JOB_TTL_S)
                return await pipe.execute()

        await self.store.execute(write)
        task = asyncio.create_task(self._run(job_id, action, viewer, members))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        _log.info(f"console.group_{action}", job=job_id, records=len(members), label=label[:300])
        return job_id

    async def _run(self, job_id: str, action: str, viewer: Viewer, members: list[str]) -> None:
        key = self._job_key(job_id)
        note = f"group {action} {job_id}"
        for start in range(0, len(members), _BATCH):
            batch = members[start : start + _BATCH]
            await asyncio.gather(*(self.request(action, viewer, rid, note) for rid in batch))
            published = str(start + len(batch))
            await self.store.execute(partial(_set_published, key, published))

    async def job(self, job_id: str) -> Job | None:
        """A job's facts, if it exists."""
        if not job_id.isalnum() or len(job_id) > 32:
            return None
        key = self._job_key(job_id)
        raw: Any = await self.store.execute(lambda r: r.hgetall(key))
        if not raw:
            return None
        facts = {k.decode(): v.decode() for k, v in raw.items()}
        return Job(
            job_id, facts["action"], facts["label"], facts["by"], int(facts["total"]),
            int(facts["published"]), json.loads(facts["members"]),
        )  # fmt: skip

    async def close(self) -> None:
        """Cancel running jobs (a stop mid-job leaves it partial; pressing again resumes it)."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _set_published(key: str, value: str, r: Any) -> Any:
    return r.hset(key, "published", value)


def done_count(statuses: list[str]) -> int:
    """How many of a job's records reached a final state."""
    return sum(1 for s in statuses if s in _FINAL)
