"""One active evaluator among the health_monitor replicas: a Redis lease with a fencing token.

Every replica consumes every heartbeat (a broadcast route) and evaluates the rules, so a
standby's history (``for`` durations, burn-rate windows) is warm; only the holder of the lease
saves alert state and sends notifications. The lease (``<prefix>health:leader``, value
``<holder>|<epoch>``) is taken with SET NX PX and renewed every ``renew_s``; the epoch comes
from ``INCR <prefix>health:leader:epoch`` at each acquisition and fences every write of alert
state and of the notification outbox (:mod:`workers.health_monitor.alerts`): a deposed leader
that wakes up late cannot overwrite its successor's state. A standby takes over within
``lease_s + renew_s`` of the leader dying.

Why one evaluator rather than shared state: the rules keep per-series history in memory and
evaluate every series at once; making each step an atomic Redis update would cost a round
trip per series per round and still need one sender per notification. A single evaluator with
hot standbys keeps evaluation local and makes "one notification per state change" a matter
of one fenced outbox.

While Redis is unreachable nobody can take the lease: the leader stays leader (degraded) so the
``RedisDown`` alert still reaches the sinks, from memory; a standby never acts without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from common.logging import get_logger
from common.store import Store

__all__ = ["ACQUIRE", "Leadership"]

_log = get_logger("eventguard.health_monitor")

# KEYS: lease, epoch counter. ARGV: holder, lease ms. Returns our epoch, or 0 when another holds it.
ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, sep + 1))
  end
  return 0
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
return epoch
"""
_RESIGN = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leadership:
    """This replica's view of the lease: whether it leads, under which epoch."""

    def __init__(
        self,
        store: Store,
        *,
        holder: str,
        lease_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.holder = holder
        self.lease_key = store.key("health", "leader")
        self.epoch_key = store.key("health", "leader", "epoch")
        self._lease_ms = max(100, round(lease_s * 1000))
        self._monotonic = monotonic
        self.epoch = 0  # ours while leading; 0 as a standby
        self.degraded = False  # leading without Redis (nobody else can take the lease)
        self.acquired_at: float | None = None
        # The last acquisition followed our own lease (it lapsed while Redis was away): this
        # replica's memory is newer than what Redis holds.
        self.continued = False

    @property
    def leading(self) -> bool:
        """True while this replica is the active evaluator."""
        return self.epoch > 0

    async def step(self) -> bool:
        """Take or renew the lease; returns True when this replica leads a new epoch."""
        key, epoch_key, holder, ms = self.lease_key, self.epoch_key, self.holder, self._lease_ms
        try:
            result: Any = await self._store.execute(
                lambda r: r.eval(ACQUIRE, 2, key, epoch_key, holder, ms)
            )
        except Exception as error:  # noqa: BLE001 - Redis away: keep what we had
            if self.leading and not self.degraded:
                self.degraded = True
                _log.warning("health.leader_degraded", epoch=self.epoch, error=repr(error)[:200])
            return False
        epoch = int(result)
        self.degraded = False
        if epoch == self.epoch:
            return False
        previous, self.epoch = self.epoch, epoch
        if epoch == 0:
            self.acquired_at = None
            _log.warning("health.leader_lost", epoch=previous, holder=holder)
            return False
        self.acquired_at = self._monotonic()
        self.continued = previous > 0
        _log.info("health.leader_acquired", epoch=epoch, holder=holder, previous=previous)
        return True

    async def resign(self) -> None:
        """Give the lease up (graceful stop), so a standby takes over at once."""
        if not self.leading or self.degraded:
            return
        key, value = self.lease_key, f"{self.holder}|{self.epoch}"
        self.epoch = 0
        try:
            await self._store.execute(lambda r: r.eval(_RESIGN, 1, key, value))
        except Exception as error:  # noqa: BLE001 - the lease expires on its own
            _log.warning("health.resign_failed", error=repr(error)[:200])
