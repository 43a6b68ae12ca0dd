"""The idempotency claim: an event id is handled once, even when delivered twice.

States of ``<prefix>idem:<worker>:<event id>``:

* ``processing:<token>`` (a short lease, ``RuntimeSettings.claim_lease_s``): someone is handling
  it. The holder renews the lease while its handler runs (:meth:`Idempotency.hold`), so a
  handler of any length keeps its claim; a crash leaves the lease to expire (within one lease)
  so the redelivery can run. A holder that cannot renew (its claim expired or was taken) has its
  handler cancelled: no handler outlives its claim;
* ``outbox:<digest>:<json list>``: the handler finished and its output events are being published;
  a redelivery re-publishes the same events (same ids) instead of running the handler again;
* ``done:<digest>`` (long TTL): handled; a redelivered duplicate is acked at once.

``<digest>`` is 16 hex characters of BLAKE2b over the delivered body (:func:`body_digest`):
a delivery of the same id with different bytes is a different event reusing the id, and the
claim says :attr:`ClaimState.REUSED` (the pipeline dead-letters it as ``id_reused``). It rides
on the one ``SET ... GET`` the claim makes anyway: no extra round trip, 17 bytes per marker.
Markers written before digests existed (``done``, ``outbox:[...]``) match any body.

A failed or dead-lettered attempt deletes the claim (only if it still holds it, by its token),
so a retry or a quarantine release runs. A claim whose reply was lost (the connection died
while reading it) is retried by the guard with the same token: finding its own token, it is
new, not busy (the event would otherwise wait out a whole lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from common.bus.redis_batch import RedisBatch
from common.errors import RetryLater
from common.logging import get_logger
from common.store import Arg, Store

__all__ = ["Claim", "ClaimLost", "ClaimState", "Idempotency", "body_digest", "is_done"]

_log = get_logger("eventguard.idempotency")
_PROCESSING = b"processing"
# Extend the lease only while it still holds our token; delete it only while it does.
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
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


class ClaimLost(RetryLater):
    """The handler's claim expired or was taken while it ran; the handler was cancelled."""


class Idempotency:
    """Claims event ids for one worker in Redis."""

    def __init__(
        self,
        store: Store,
        *,
        worker: str,
        lease_s: float,
        done_ttl_s: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._redis = RedisBatch(store)  # concurrent claims share one round trip
        self._prefix = store.key("idem", worker, "")
        self._lease_ms = max(1000, round(lease_s * 1000))
        self._done_ttl_s = done_ttl_s
        self._monotonic = monotonic
        self._tokens: dict[str, bytes] = {}  # event id -> our lease value, while we hold it
        self._held: dict[str, _Held] = {}  # event id -> its running handler
        self._timer: asyncio.TimerHandle | None = None  # the next renewal round, while armed
        self._renewing: asyncio.Task[None] | None = None  # a renewal round in progress

    @property
    def lease_s(self) -> float:
        """How long a claim lives without renewal."""
        return self._lease_ms / 1000

    def _key(self, event_id: str) -> str:
        return self._prefix + event_id

    async def claim(self, event_id: str, digest: bytes = b"") -> Claim:
        """Claim ``event_id`` for processing (one round trip); ``digest`` is the body's
        :func:`body_digest`, compared with the one a finished claim kept."""
        key = self._key(event_id)
        token = _PROCESSING + b":" + os.urandom(8).hex().encode()
        previous: Any = await self._redis.execute(
            "SET", key, token, "NX", "PX", self._lease_ms, "GET"
        )
        if previous is None or previous == token:  # ours: the guard's retry of a batch whose
            self._tokens[event_id] = token  # first write landed but whose reply was lost
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
        await self._write("SET", key, value, "EX", self._done_ttl_s)
        self._tokens.pop(event_id, None)

    async def done(self, event_id: str, digest: bytes = b"") -> None:
        """Mark ``event_id`` handled, keeping the body's digest (durable: see :meth:`_write`)."""
        key = self._key(event_id)
        value = _DONE + b":" + digest if digest else _DONE
        await self._write("SET", key, value, "EX", self._done_ttl_s)
        self._tokens.pop(event_id, None)

    async def _write(self, *command: Arg) -> None:
        """The marks an ack depends on: with ``WAIT`` configured, a replica must hold them
        before the message is acked (a failover then loses neither the outbox, which would run
        the handler again with new output ids, nor the done mark); otherwise batched."""
        if self._store.wait_replicas:
            await self._store.execute_durable(lambda pipe: pipe.execute_command(*command))
        else:
            await self._redis.execute(*command)

    async def release(self, event_id: str) -> None:
        """Forget the claim so the next delivery runs the handler (only while it is ours)."""
        key = self._key(event_id)
        token = self._tokens.pop(event_id, None)
        if token is None:
            await self._redis.execute("DEL", key)
        else:
            await self._redis.execute("EVAL", _RELEASE, 1, key, token)

    async def renew(self, event_id: str) -> bool:
        """Extend our lease on ``event_id`` by a full lease; False when it is no longer ours."""
        token = self._tokens.get(event_id)
        if token is None:
            return False
        key = self._key(event_id)
        renewed: Any = await self._redis.execute("EVAL", _RENEW, 1, key, token, self._lease_ms)
        return bool(renewed)

    def hold(self, event_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Renew the claim every third of a lease while the body runs (one timer renews every
        held claim of this worker together, so a message costs no task or timer of its own; a
        round finding nothing held leaves nothing behind until the next claim is held).

        If the claim is lost (taken by another holder, or not renewed for two thirds of a lease
        because Redis did not answer), the body is cancelled and :class:`ClaimLost` raised: the
        handler never runs on past its claim, so a redelivered copy cannot run beside it."""
        if event_id not in self._tokens:
            return contextlib.nullcontext()
        return _Hold(self, event_id)

    def _holding(self, event_id: str, held: _Held) -> None:
        self._held[event_id] = held
        if self._timer is None and self._renewing is None:
            self._arm()

    def _released(self, event_id: str) -> None:
        self._held.pop(event_id, None)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.lease_s / 3, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._held:
            return  # idle: nothing armed, no task left behind
        self._renewing = asyncio.get_running_loop().create_task(self._renew_held())
        self._renewing.add_done_callback(self._renewed)

    def _renewed(self, task: asyncio.Task[None]) -> None:
        self._renewing = None
        if self._held and not task.cancelled():
            self._arm()

    async def _renew_held(self) -> None:
        lease_s = self.lease_s
        held = list(self._held.items())
        results = await asyncio.gather(
            *(self.renew(event_id) for event_id, _ in held), return_exceptions=True
        )
        now = self._monotonic()
        for (event_id, entry), result in zip(held, results, strict=True):
            if self._held.get(event_id) is not entry or entry.lost:
                continue  # finished meanwhile, or already being cancelled
            if isinstance(result, BaseException):
                _log.warning("idempotency.renew_failed", error=repr(result)[:200])
                if now - entry.renewed_at < lease_s * 2 / 3:
                    continue
                entry.lost = f"claim not renewed for {lease_s:.1f} s (Redis unreachable)"
            elif result:
                entry.renewed_at = now
                continue
            else:
                entry.lost = "claim expired or taken by another holder"
            _log.warning("idempotency.claim_lost", reason=entry.lost)
            entry.task.cancel()


class _Hold:
    """:meth:`Idempotency.hold` for a claim we hold (a class: no generator per message)."""

    __slots__ = ("_event_id", "_held", "_owner")

    def __init__(self, owner: Idempotency, event_id: str) -> None:
        self._owner = owner
        self._event_id = event_id
        self._held: _Held | None = None

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Idempotency.hold needs to run inside a task")
        self._held = _Held(task, self._owner._monotonic())
        self._owner._holding(self._event_id, self._held)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._owner._released(self._event_id)
        held = self._held
        cancelled = kind is not None and issubclass(kind, asyncio.CancelledError)
        if cancelled and held is not None and held.lost and held.task.uncancel() == 0:
            raise ClaimLost(held.lost) from None


class _Held:
    """A claim being held: its handler's task, when it was last renewed, why it was lost."""

    __slots__ = ("lost", "renewed_at", "task")

    def __init__(self, task: asyncio.Task[Any], renewed_at: float) -> None:
        self.task = task
        self.renewed_at = renewed_at
        self.lost = ""


def _same(kept: bytes, digest: bytes) -> bool:
    """A marker without a digest (older, or written without one) matches any body."""
    return not kept or not digest or kept == digest
