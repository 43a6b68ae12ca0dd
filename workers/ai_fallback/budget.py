"""Token and money budgets per request, per actor and overall, kept in Redis per time window.

Before any provider call a request *reserves* its worst case (prompt plus its output allowance)
in every scope it counts against: one Lua step checks every scope and adds to all of them, or
to none, so concurrent requests on any number of replicas can never together overspend a
limit. After the call it *settles*: one Lua step replaces the reservation with what was
actually used (nothing, when no model answered). A replica that dies between the two leaves
its reservation counted until the window ends: budgets err on the side of spending less.
Money is counted in micro-dollars so Redis adds it exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.config.workers import AiFallbackSettings
from common.store import Store
from workers.ai_fallback import keys

__all__ = ["Budgets", "Reservation", "Usage"]

# KEYS: the scopes' usage hashes, then the window's index of requester scopes (when a requester
# scope is among them). ARGV: tokens, micro-dollars, ttl, the number of usage hashes, then per
# hash its token and micro-dollar limits ('' = none), then the requester scope to index. Returns
# {0} when reserved, else {key index, 'tokens' or 'micro_usd', used so far}: nothing is added
# unless every scope can take the whole request.
_RESERVE = """
local t, m, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, n do
  local k = KEYS[i]
  local used_t = tonumber(redis.call('HGET', k, 'tokens') or '0')
  local used_m = tonumber(redis.call('HGET', k, 'micro_usd') or '0')
  local max_t, max_m = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if max_t ~= '' and used_t + t > tonumber(max_t) then return {i, 'tokens', used_t} end
  if max_m ~= '' and used_m + m > tonumber(max_m) then return {i, 'micro_usd', used_m} end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'tokens', t)
  redis.call('HINCRBY', KEYS[i], 'micro_usd', m)
  redis.call('EXPIRE', KEYS[i], ttl)
end
if #KEYS > n then
  redis.call('SADD', KEYS[n + 1], ARGV[5 + 2 * n])
  redis.call('EXPIRE', KEYS[n + 1], ttl)
end
return {0}
"""
# KEYS: the reserved hashes. ARGV: the token and micro-dollar corrections (may be negative).
_SETTLE = """
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    redis.call('HINCRBY', k, 'tokens', ARGV[1])
    redis.call('HINCRBY', k, 'micro_usd', ARGV[2])
  end
end
return 1
"""


@dataclass(frozen=True)
class Usage:
    """Tokens and dollars."""

    tokens: int
    cost_usd: float


@dataclass(frozen=True)
class Reservation:
    """What a request reserved, and where (the window's keys it was reserved in)."""

    keys: tuple[str, ...]
    tokens: int
    micro_usd: int


class Budgets:
    """The three budget scopes over one Redis store; ``now`` is epoch seconds."""

    def __init__(
        self, store: Store, settings: AiFallbackSettings, *, now: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._s = settings
        self._now = now

    def _window(self) -> int:
        return int(self._now() // self._s.budget_window_s)

    def _scopes(self, actor: str | None) -> list[tuple[str, int | None, float | None]]:
        scopes: list[tuple[str, int | None, float | None]] = []
        if self._s.global_max_tokens is not None or self._s.global_max_cost_usd is not None:
            scopes.append(("global", self._s.global_max_tokens, self._s.global_max_cost_usd))
        limited = self._s.actor_max_tokens is not None or self._s.actor_max_cost_usd is not None
        if actor is not None and limited:
            # ``actor`` is the requester's key: ``actor:<subject>`` or ``producer:<user>``.
            scopes.append((actor, self._s.actor_max_tokens, self._s.actor_max_cost_usd))
        return scopes

    def check_request(self, worst: Usage, max_cost_usd: float | None) -> str | None:
        """Why the request alone is over its own budget, or None."""
        limit_tokens = self._s.request_max_tokens
        if limit_tokens is not None and worst.tokens > limit_tokens:
            return f"request needs up to {worst.tokens} tokens > per-request limit {limit_tokens}"
        caps = [c for c in (max_cost_usd, self._s.request_max_cost_usd) if c is not None]
        if caps and worst.cost_usd > min(caps):
            return (
                f"request may cost up to ${worst.cost_usd:.6f} > per-request limit "
                f"${min(caps):.6f} on every eligible model"
            )
        return None

    async def reserve(self, actor: str | None, worst: Usage) -> Reservation | str:
        """Reserve ``worst`` in the actor's and the global budget at once (one Lua step), or
        say why one of them cannot take it."""
        scopes = self._scopes(actor)
        if not scopes:
            return Reservation((), 0, 0)
        window = self._window()
        names = [keys.budget(self._store, window, scope) for scope, _, _ in scopes]
        micro = round(worst.cost_usd * 1_000_000)
        args: list[Any] = [worst.tokens, micro, 2 * self._s.budget_window_s, len(names)]
        for _, max_tokens, max_cost in scopes:
            args += [
                "" if max_tokens is None else max_tokens,
                "" if max_cost is None else round(max_cost * 1_000_000),
            ]
        requester = [scope for scope, _, _ in scopes if scope != "global"]
        index = [keys.budget_index(self._store, window)] if requester else []
        args += requester[:1]
        result: Any = await self._store.execute(
            lambda r: r.eval(_RESERVE, len(names) + len(index), *names, *index, *args)
        )
        refused = int(result[0])
        if refused == 0:
            return Reservation(tuple(names), worst.tokens, micro)
        scope, max_tokens, max_cost = scopes[refused - 1]
        label = "global" if scope == "global" else "actor"
        used = int(result[2])
        what = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
        if what == "tokens":
            return (
                f"{label} token budget: {used} of {max_tokens} used in this window, "
                f"request needs up to {worst.tokens}"
            )
        return (
            f"{label} cost budget: ${used / 1_000_000:.6f} of ${max_cost:.6f} used in this "
            f"window, request may cost up to ${worst.cost_usd:.6f}"
        )

    async def settle(self, reservation: Reservation, used: Usage) -> None:
        """Replace ``reservation`` by what was actually ``used`` (one Lua step)."""
        if not reservation.keys:
            return
        d_tokens = used.tokens - reservation.tokens
        d_micro = round(used.cost_usd * 1_000_000) - reservation.micro_usd
        if d_tokens == 0 and d_micro == 0:
            return
        names = list(reservation.keys)
        await self._store.execute(lambda r: r.eval(_SETTLE, len(names), *names, d_tokens, d_micro))
