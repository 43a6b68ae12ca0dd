"""The idempotency claim: an event id is handled once, even when delivered twice.

States of ``<prefix>idem:<worker>:<event id>``:

* ``processing`` (short lease, the handler's timeout plus a margin): someone is handling it; a
  crash leaves the lease to expire so the redelivery can run;
* ``outbox:<digest>:<json list>``: the handler finished and its output events are being
  published; a redelivery re-publishes the same events (same ids) instead of running the
  handler again;
* ``done:<digest>`` (long TTL): handled; a redelivered duplicate is acked at once.

``<digest>`` is 16 hex characters of BLAKE2b over the delivered body (:func:`body_digest`):
a delivery of the same id with different bytes is a different event reusing the id, and the
claim says :attr:`ClaimState.REUSED` (the pipeline dead-letters it as ``id_reused``). It rides
on the one ``SET ... GET`` the claim makes anyway: no extra round trip, 17 bytes per marker.
Markers written before digests existed (``done``, ``outbox:[...]``) match any body.

A failed or dead-lettered attempt deletes the claim, so a retry or a quarantine release runs.
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Any

from common.bus.redis_batch import Command, RedisBatch
from common.store import Store

__all__ = ["Claim", "ClaimState", "Idempotency", "body_digest", "is_done"]

_PROCESSING = b"processing"
_DONE = b"done"
_OUTBOX = b"outbox:"
_DIGEST_CHARS = 16


def is_done(value: bytes | str | None) -> bool:
    """Whether a claim key's ``value`` says handled (``done``, with or without its digest)."""
    if isinstance(value, str):
        value = value.encode()
    return value is not None and (value == _DONE or value.startswith(_DONE + b":"))


def body_digest(body: bytes) -> bytes:
    """The digest kept with a claim: 16 hex characters of BLAKE2b over ``body``."""
    return hashlib.blake2b(body, digest_size=_DIGEST_CHARS // 2).hexdigest().encode("ascii")


class ClaimState(enum.Enum):
    """What the claim found."""

    NEW = "new"
    DONE = "done"
    BUSY = "busy"
    OUTBOX = "outbox"
    REUSED = "reused"  # handled before, with a different body: another event reusing the id


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

    async def claim(self, event_id: str, digest: bytes = b"") -> Claim:
        """Claim ``event_id`` for processing (one round trip); ``digest`` is the body's
        :func:`body_digest`, compared with the one a finished claim kept."""
        key = self._key(event_id)
        previous: Any = await self._redis.execute(
            lambda r: r.set(key, _PROCESSING, nx=True, px=self._lease_ms, get=True)
        )
        if previous is None:
            return Claim(ClaimState.NEW)
        if not isinstance(previous, bytes) or previous == _PROCESSING:
            return Claim(ClaimState.BUSY)
        if previous.startswith(_DONE):
            kept = previous[len(_DONE) + 1 :]
            return Claim(ClaimState.DONE if _same(kept, digest) else ClaimState.REUSED)
        if previous.startswith(_OUTBOX):
            rest = previous[len(_OUTBOX) :]
            kept = b""
            if not rest.startswith(b"["):
                kept, _, rest = rest.partition(b":")
            if not _same(kept, digest):
                return Claim(ClaimState.REUSED)
            return Claim(ClaimState.OUTBOX, json.loads(rest))
        return Claim(ClaimState.BUSY)

    async def save_outbox(self, event_id: str, bodies: list[str], digest: bytes = b"") -> None:
        """Record the output events before publishing them (durable: see :meth:`_write`)."""
        value = _OUTBOX + (digest + b":" if digest else b"") + json.dumps(bodies).encode()
        key = self._key(event_id)
        await self._write(lambda r: r.set(key, value, ex=self._done_ttl_s))

    async def done(self, event_id: str, digest: bytes = b"") -> None:
        """Mark ``event_id`` handled, keeping the body's digest (durable: see :meth:`_write`)."""
        key = self._key(event_id)
        value = _DONE + b":" + digest if digest else _DONE
        await self._write(lambda r: r.set(key, value, ex=self._done_ttl_s))

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


def _same(kept: bytes, digest: bytes) -> bool:
    """A marker without a digest (older, or written without one) matches any body."""
    return not kept or not digest or kept == digest
