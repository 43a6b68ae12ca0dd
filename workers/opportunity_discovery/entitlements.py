"""Who owns which strategy, until when, and which assets they scan: kept in Redis.

A purchase and a revocation may arrive out of order (retries go through delay queues), so each
change is applied in one Lua step that compares event times: a revocation remembers when it
happened, and a purchase older than that revocation changes nothing. Every entitlement has its
own expiry (checked against the injected clock on read); the user's keys also expire in Redis
with their last expiring entitlement, and never while one is permanent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.store import Store
from workers.opportunity_discovery import keys

__all__ = ["Entitlements", "Owned"]

_REVOCATION_MEMORY_S = 90 * 24 * 3600

# KEYS: ent, rev, filter. ARGV: strategy, expiry (0 = none), event time, filter JSON or ''.
# Returns 1 when granted, 0 when an earlier-or-equal revocation wins.
_GRANT = """
local revoked = redis.call('HGET', KEYS[2], ARGV[1])
if revoked and tonumber(revoked) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4]) end
local last = 0
local flat = redis.call('HGETALL', KEYS[1])
for i = 2, #flat, 2 do
  local e = tonumber(flat[i])
  if e == 0 then last = -1 break end
  if e > last then last = e end
end
for _, k in ipairs({KEYS[1], KEYS[3]}) do
  if last < 0 then redis.call('PERSIST', k) else redis.call('EXPIREAT', k, math.floor(last) + 1) end
end
return 1
"""

# KEYS: ent, rev. ARGV: strategy, event time, memory seconds.
_REVOKE = """
local revoked = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) > revoked then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[2], ARGV[3])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


@dataclass(frozen=True)
class Owned:
    """What a user owns right now."""

    known: bool  # the user has (or had, unexpired in Redis) any entitlement
    strategies: dict[str, float]  # strategy -> expiry (epoch s, 0 = none), unexpired only
    assets: list[str] | None  # the asset filter, if any


class Entitlements:
    """Grants, revocations and reads for one store."""

    def __init__(self, store: Store, *, now: Callable[[], float]) -> None:
        self.store = store
        self.now = now

    async def grant(
        self,
        user_id: str,
        strategy: str,
        *,
        expires_at: float | None,
        at: float,
        assets: list[str] | None,
    ) -> bool:
        """Record a purchase made at ``at``; False when a later revocation already won."""
        keys_ = (
            keys.entitlements(self.store, user_id),
            keys.revocations(self.store, user_id),
            keys.asset_filter(self.store, user_id),
        )
        args = (strategy, repr(expires_at or 0.0), repr(at), json.dumps(assets) if assets else "")
        granted: Any = await self.store.execute(lambda r: r.eval(_GRANT, 3, *keys_, *args))
        return bool(granted)

    async def revoke(self, user_id: str, strategy: str, *, at: float) -> bool:
        """Record a revocation made at ``at``; True when the user owned the strategy."""
        keys_ = (keys.entitlements(self.store, user_id), keys.revocations(self.store, user_id))
        args = (strategy, repr(at), _REVOCATION_MEMORY_S)
        removed: Any = await self.store.execute(lambda r: r.eval(_REVOKE, 2, *keys_, *args))
        return bool(removed)

    async def owned(self, user_id: str) -> Owned:
        """The user's unexpired strategies and asset filter."""
        ent = keys.entitlements(self.store, user_id)
        flt = keys.asset_filter(self.store, user_id)

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hgetall(ent)
                pipe.get(flt)
                return await pipe.execute()

        raw, raw_filter = await self.store.execute(read)
        now = self.now()
        strategies = {}
        for strategy, expiry in raw.items():
            until = float(expiry)
            if until == 0 or until > now:
                strategies[strategy.decode()] = until
        assets = json.loads(raw_filter) if raw_filter else None
        return Owned(known=bool(raw), strategies=strategies, assets=assets)
