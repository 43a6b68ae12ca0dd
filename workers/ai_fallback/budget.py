"""Token and money budgets per request, per actor and overall, kept in Redis per time window.

Checked before any provider call with the request's worst case (prompt plus its output
allowance) and recorded after with what was actually used. Money is counted in micro-dollars
so Redis can add it atomically with HINCRBY. The check and the record are separate steps, so
concurrent requests may together overshoot a limit by at most their own worst cases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.config import AiFallbackSettings
from common.store import Store
from workers.ai_fallback import keys

__all__ = ["Budgets", "Usage"]


@dataclass(frozen=True)
class Usage:
    """Tokens and dollars."""

    tokens: int
    cost_usd: float


class Budgets:
    """The three budget scopes over one Redis store; ``clock`` is epoch seconds."""

    def __init__(
        self, store: Store, settings: AiFallbackSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._s = settings
        self._clock = clock

    def _window(self) -> int:
        return int(self._clock() // self._s.budget_window_s)

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

    async def check(self, actor: str | None, worst: Usage) -> str | None:
        """Why the actor's or the global budget cannot take ``worst`` now, or None."""
        scopes = self._scopes(actor)
        if not scopes:
            return None
        window = self._window()
        names = [keys.budget(self._store, window, scope) for scope, _, _ in scopes]

        async def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.hmget(name, "tokens", "micro_usd")
            return list(await pipe.execute())

        replies = await self._store.execute(read)
        for (scope, max_tokens, max_cost), (tokens_raw, micro_raw) in zip(
            scopes, replies, strict=True
        ):
            used_tokens = int(tokens_raw or 0)
            used_cost = int(micro_raw or 0) / 1_000_000
            label = "global" if scope == "global" else "actor"
            if max_tokens is not None and used_tokens + worst.tokens > max_tokens:
                return (
                    f"{label} token budget: {used_tokens} of {max_tokens} used in this window, "
                    f"request needs up to {worst.tokens}"
                )
            if max_cost is not None and used_cost + worst.cost_usd > max_cost:
                return (
                    f"{label} cost budget: ${used_cost:.6f} of ${max_cost:.6f} used in this "
                    f"window, request may cost up to ${worst.cost_usd:.6f}"
                )
        return None

    async def record(self, actor: str | None, used: Usage) -> None:
        """Add what a request actually used to every scope it counts against."""
        scopes = self._scopes(actor)
        if not scopes or (used.tokens <= 0 and used.cost_usd <= 0):
            return
        window = self._window()
        ttl = 2 * self._s.budget_window_s
        names = [keys.budget(self._store, window, scope) for scope, _, _ in scopes]
        micro = round(used.cost_usd * 1_000_000)

        async def write(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=True)
            for name in names:
                pipe.hincrby(name, "tokens", used.tokens)
                pipe.hincrby(name, "micro_usd", micro)
                pipe.expire(name, ttl)
            return list(await pipe.execute())

        await self._store.execute(write)
