"""Shared breaker state: replicas of a worker see one breaker through Redis.

Each process still decides locally first, and a call in the closed state never waits for
Redis: outcomes are counted locally and flushed in the background every ``sync_interval_s``
into time-bucketed counters by one Lua script, which returns the fleet's totals and the
shared open state in the same round trip. When the fleet's window trips, or another replica
has opened, the local breaker opens too; when the local breaker opens it publishes its open
period. In half-open, probe permits are leased fleet-wide so the whole fleet sends only the
configured number of probes. If Redis is unreachable the breaker keeps working on its local
state, counts the fallback and logs it once per outage: it never blocks on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from redis.exceptions import RedisError

from common.errors import EventGuardError
from common.logging import get_logger
from common.metrics import Metrics
from common.reliability.breaker import CircuitBreaker
from common.reliability.breaker_types import State

_T = TypeVar("_T")


class SharedStateStore(Protocol):
    """What shared breaker state needs of a store: namespaced keys and one guarded call.

    ``common.store.Store`` satisfies it; reliability never imports the store (the store runs
    behind a guard itself)."""

    def key(self, *parts: str) -> str:
        """The namespaced key of ``parts``."""
        ...

    async def execute(self, op: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``op`` with the Redis client, under the store's guard."""
        ...

__all__ = ["SharedBreakerState"]

_log = get_logger("eventguard.reliability")
_FAILURES = (RedisError, OSError, TimeoutError, EventGuardError)

_SYNC = """
local prefix = KEYS[1]
local now = tonumber(ARGV[1])
if tonumber(ARGV[2]) > 0 then
  local key = prefix .. 'b:' .. now
  redis.call('HINCRBY', key, 'c', ARGV[2])
  redis.call('HINCRBY', key, 'f', ARGV[3])
  redis.call('HINCRBY', key, 's', ARGV[4])
  redis.call('EXPIRE', key, ARGV[6])
end
local first = now - tonumber(ARGV[5]) + 1
local epoch = tonumber(redis.call('GET', prefix .. 'epoch') or '0')
if epoch > first then first = epoch end
local c, f, s = 0, 0, 0
for b = first, now do
  local v = redis.call('HMGET', prefix .. 'b:' .. b, 'c', 'f', 's')
  c = c + (tonumber(v[1]) or 0)
  f = f + (tonumber(v[2]) or 0)
  s = s + (tonumber(v[3]) or 0)
end
return {c, f, s, redis.call('GET', prefix .. 'open') or ''}
"""

_LEASE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 1 end
return 0
"""


S = TypeVar("S", bound=SharedStateStore)


class SharedBreakerState(Generic[S]):
    """Couples one local breaker to the fleet's view of the same dependency."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        store: S,
        *,
        metrics: Metrics | None = None,
        sync_interval_s: float = 1.0,
        window_s: int = 30,
        lease_timeout_s: float = 0.25,
        wall: Any = time.time,
    ) -> None:
        self.breaker = breaker
        self.store = store
        self.sync_interval_s = sync_interval_s
        self.window_s = window_s
        self.lease_timeout_s = lease_timeout_s
        self._wall = wall
        self._prefix = store.key("breaker", "{" + breaker.name + "}", "")
        self._fallbacks = (
            metrics.reliability.breaker_shared_fallback.labels(breaker.name) if metrics else None
        )
        self._sent = (0, 0, 0)
        self._degraded = False
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        breaker.probe_gate = self.lease_probe
        breaker.add_listener(self._on_change)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background sync."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop syncing."""
        tasks = [t for t in (self._task, *self._pending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None

    async def _run(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(self.sync_interval_s)

    # -- the sync -----------------------------------------------------------------------------

    @property
    def flushed_calls(self) -> int:
        """Local calls whose outcomes have reached Redis so far."""
        return self._sent[0]

    def _delta(self) -> tuple[int, int, int]:
        counts = self.breaker.counts
        total = (counts.success + counts.failure + counts.slow, counts.failure, counts.slow)
        return (total[0] - self._sent[0], total[1] - self._sent[1], total[2] - self._sent[2])

    async def sync_once(self) -> None:
        """Flush local counts, read the fleet's, and follow the fleet's decisions."""
        delta = self._delta()
        now = int(self._wall())
        args = [now, delta[0], delta[1], delta[2], self.window_s, self.window_s * 2]
        try:
            reply: Any = await self.store.execute(lambda r: r.eval(_SYNC, 1, self._prefix, *args))
        except _FAILURES as error:
            self._fell_back(error)
            return
        self._recovered()
        self._sent = (self._sent[0] + delta[0], self._sent[1] + delta[1], self._sent[2] + delta[2])
        calls, failures, slow = int(reply[0]), int(reply[1]), int(reply[2])
        open_until = float(reply[3]) / 1000 if reply[3] else 0.0
        breaker = self.breaker
        state = breaker.state
        if state is not State.CLOSED:
            return
        remaining = open_until - self._wall()
        if remaining > 0:
            breaker.trip(retry_after_s=remaining)
            return
        cfg = breaker.config
        if calls >= cfg.minimum_calls and (
            failures >= cfg.failure_rate * calls or slow >= cfg.slow_call_rate * calls
        ):
            breaker.trip()

    async def lease_probe(self) -> bool:
        """A fleet-wide half-open probe permit (True also when Redis is unreachable).

        The first ``half_open_permits`` leases of a half-open period win; the lease key lives
        ``open_s`` at most and is cleared whenever the breaker opens or closes. The caller waits
        ``lease_timeout_s`` at most: past that, Redis counts as unreachable."""
        key = self._prefix + "probe"
        permits = self.breaker.config.half_open_permits
        ttl_ms = max(1000, int(self.breaker.config.open_s * 1000))
        try:
            async with asyncio.timeout(self.lease_timeout_s):
                granted: Any = await self.store.execute(
                    lambda r: r.eval(_LEASE, 1, key, permits, ttl_ms)
                )
        except _FAILURES as error:
            self._fell_back(error)
            return True
        return bool(int(granted))

    # -- publishing local decisions -------------------------------------------------------

    def _on_change(self, breaker: CircuitBreaker, _old: State, new: State) -> None:
        if new is State.OPEN:
            self._spawn(self._publish_open(breaker.remaining_open_s()))
        elif new is State.CLOSED:
            self._spawn(self._publish_closed())

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a breaker used synchronously in a test)
            coro.close()
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_open(self, duration_s: float) -> None:
        until_ms = int((self._wall() + duration_s) * 1000)
        ttl_ms = max(1, int(duration_s * 1000))
        open_key, probe_key = self._prefix + "open", self._prefix + "probe"

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(open_key, until_ms, px=ttl_ms)
                pipe.delete(probe_key)  # the next half-open period leases afresh
                return await pipe.execute()

        try:
            await self.store.execute(write)
        except _FAILURES as error:
            self._fell_back(error)

    async def _publish_closed(self) -> None:
        epoch = str(int(self._wall()) + 1)
        open_key, epoch_key = self._prefix + "open", self._prefix + "epoch"
        probe_key = self._prefix + "probe"
        ttl = self.window_s * 2

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(open_key, probe_key)
                pipe.set(epoch_key, epoch, ex=ttl)
                return await pipe.execute()

        try:
            await self.store.execute(write)
        except _FAILURES as error:
            self._fell_back(error)

    def _fell_back(self, error: BaseException) -> None:
        if self._fallbacks is not None:
            self._fallbacks.inc()
        if not self._degraded:
            self._degraded = True
            _log.warning(
                "breaker.shared_unavailable", dependency=self.breaker.name, error=repr(error)
            )

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            _log.info("breaker.shared_recovered", dependency=self.breaker.name)
