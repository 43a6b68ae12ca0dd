"""The idempotency claim: an event id is handled once, even when delivered twice.

States of ``<prefix>idem:<worker>:<event id>``:

* ``processing`` (short lease, the handler's timeout plus a margin): someone is handling it; a
  crash leaves the lease to expire so the redelivery can run;
* ``outbox:<json list>``: the handler finished and its output events are being published;
  a redelivery re-publishes the same events (same ids) instead of running the handler again;
* ``done`` (long TTL): handled; a redelivered duplicate is acked at once.

A failed or dead-lettered attempt deletes the claim, so a retry or a quarantine release runs.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from common.bus.redis_batch import Command, RedisBatch
from common.store import Store

__all__ = ["Claim", "ClaimState", "Idempotency"]

_PROCESSING = b"processing"
_DONE = b"done"
_OUTBOX = b"outbox:"


class ClaimState(enum.Enum):
    """What the claim found."""

    NEW = "new"
    DONE = "done"
    BUSY = "busy"
    OUTBOX = "outbox"


class Claim:
    """The result of :meth:`Idempotency.claim`."""

    __slots__ = ("outbox", "state")

    def __init__(self, state: ClaimState, outbox: list[str] | None = None) -> None:
        self.state = state
        self.outbox = outbox or []


class Idempotency:
    """Claims event ids for one worker in Redis."""

    def __init__(self, store: Store, *, worker: str, lease_s: float, done_ttl_s: int) -> None:
        self._store = store
        self._redis = RedisBatch(store)  # concurrent claims share one round trip
        self._prefix = store.key("idem", worker, "")
        self._lease_ms = max(1000, round(lease_s * 1000))
        self._done_ttl_s = done_ttl_s

    def _key(self, event_id: str) -> str:
        return self._prefix + event_id

    async def claim(self, event_id: str) -> Claim:
        """Claim ``event_id`` for processing (one round trip)."""
        key = self._key(event_id)
        previous: Any = await self._redis.execute(
            lambda r: r.set(key, _PROCESSING, nx=True, px=self._lease_ms, get=True)
        )
        if previous is None:
            return Claim(ClaimState.NEW)
        if previous == _DONE:
            return Claim(ClaimState.DONE)
        if isinstance(previous, bytes) and previous.startswith(_OUTBOX):
            return Claim(ClaimState.OUTBOX, json.loads(previous[len(_OUTBOX) :]))
        return Claim(ClaimState.BUSY)

    async def save_outbox(self, event_id: str, bodies: list[str]) -> None:
        """Record the output events before publishing them (durable: see :meth:`_write`)."""
        value = _OUTBOX + json.dumps(bodies).encode()
        key = self._key(event_id)
        await self._write(lambda r: r.set(key, value, ex=self._done_ttl_s))

    async def done(self, event_id: str) -> None:
        """Mark ``event_id`` handled (durable: see :meth:`_write`)."""
        key = self._key(event_id)
        await self._write(lambda r: r.set(key, _DONE, ex=self._done_ttl_s))

    async def _write(self, command: Command) -> None:
        """The marks an ack depends on: with ``WAIT`` configured, a replica must hold them
        before the message is acked (a failover then loses neither the outbox, which would run
        the handler again with new output ids, nor the done mark); otherwise batched."""
        if self._store.wait_replicas:
            await self._store.execute_durable(command)
        else:
            await self._redis.execute(command)

    async def release(self, event_id: str) -> None:
        """Forget the claim so the next delivery runs the handler."""
        key = self._key(event_id)
        await self._redis.execute(lambda r: r.delete(key))
