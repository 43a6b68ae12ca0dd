"""Per-model health: EWMA latency and error rate, cool-downs and auth disables.

Cool-downs and disables are written to Redis (``keys.cooldown`` with a TTL, ``keys.disabled``
holding the configuration fingerprint that failed, ``keys.off`` for a model an operator switched
off) and read back at start and every resync, so a restart keeps them and replicas converge; an
auth disable lifts by itself when the model's configuration (endpoint, key...) changes, an
operator's only when an operator enables the model.
Latency and error rate are hints for ordering and for the heartbeat and live in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from common.store import Store
from workers.ai_fallback import keys
from workers.ai_fallback.chain import Model

__all__ = ["HealthBook", "ModelHealth", "ModelState"]


class ModelState(IntEnum):
    """What the model_state gauge reports."""

    HEALTHY = 0
    DEGRADED = 1
    COOLING = 2
    OPEN = 3
    DISABLED = 4
    QUARANTINED = 5


@dataclass
class ModelHealth:
    """What this process has seen of one model."""

    latency_s: float | None = None
    error_rate: float = 0.0
    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    disabled: bool = False
    off: bool = False  # switched off by an operator
    calls: int = 0

    @property
    def out(self) -> bool:
        """Kept out of every chain: disabled by an auth failure or by an operator."""
        return self.disabled or self.off


class HealthBook:
    """Health of every model; ``monotonic`` is monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        models: dict[str, Model],
        *,
        store: Store,
        alpha: float = 0.2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._models = models
        self._store = store
        self._alpha = alpha
        self.monotonic = monotonic
        self.health = {name: ModelHealth() for name in models}

    async def load(self) -> list[str]:
        """Read persisted cool-downs and disables (at start, then every resync: Redis is the
        truth every replica shares); returns the models whose disable lifted because their
        configuration changed (their markers are deleted)."""
        names = list(self._models)
        if not names:
            return []
        store = self._store

        async def read(r: Any) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.pttl(keys.cooldown(store, name))
                pipe.get(keys.disabled(store, name))
                pipe.exists(keys.off(store, name))
            return list(await pipe.execute())

        replies = await store.execute(read)
        now = self.monotonic()
        lifted: list[str] = []
        for i, name in enumerate(names):
            ttl_ms, fingerprint, off = replies[3 * i : 3 * i + 3]
            h = self.health[name]
            h.off = bool(off)
            if isinstance(ttl_ms, int) and ttl_ms > 0:
                h.cooldown_until = now + ttl_ms / 1000
                h.cooldown_reason = "persisted"
            elif h.cooldown_until > now:  # lifted in Redis (``eventguard ai enable``)
                h.cooldown_until = now
            if isinstance(fingerprint, bytes):
                same = fingerprint.decode() == self._models[name].fingerprint
                h.disabled = same
                if not same:
                    lifted.append(name)
            else:
                h.disabled = False
        if lifted:
            stale = [keys.disabled(store, name) for name in lifted]
            await store.execute(lambda r: r.delete(*stale))
        return lifted

    def observe(self, name: str, *, ok: bool, latency_s: float | None) -> None:
        """Fold one call into the model's EWMAs (``ok`` False for failures of the model)."""
        h = self.health[name]
        h.calls += 1
        a = self._alpha
        h.error_rate += a * ((0.0 if ok else 1.0) - h.error_rate)
        if ok and latency_s is not None:
            h.latency_s = (
                latency_s if h.latency_s is None else h.latency_s + a * (latency_s - h.latency_s)
            )

    def cooling(self, name: str) -> float:
        """Seconds of cool-down left (0 when none)."""
        return max(0.0, self.health[name].cooldown_until - self.monotonic())

    async def cool_down(self, name: str, seconds: float, reason: str) -> None:
        """Keep ``name`` out of every chain for ``seconds``."""
        h = self.health[name]
        h.cooldown_until = max(h.cooldown_until, self.monotonic() + seconds)
        h.cooldown_reason = reason
        key, ms = keys.cooldown(self._store, name), max(1, int(seconds * 1000))
        await self._store.execute(lambda r: r.set(key, reason, px=ms))

    async def disable(self, name: str) -> None:
        """Keep ``name`` out until its configuration fingerprint changes."""
        self.health[name].disabled = True
        key, fingerprint = keys.disabled(self._store, name), self._models[name].fingerprint
        await self._store.execute(lambda r: r.set(key, fingerprint))

    async def switch_off(self, name: str, *, by: str, note: str, at: float) -> bool:
        """Keep ``name`` out until an operator enables it; False when it already was off."""
        self.health[name].off = True
        key = keys.off(self._store, name)
        value = json.dumps({"by": by, "note": note, "at": at})
        created: Any = await self._store.execute(lambda r: r.set(key, value, nx=True))
        return bool(created)

    async def enable(self, name: str) -> bool:
        """Lift ``name``'s operator and auth disables and cool-down, here and in Redis; True
        when it had one."""
        h = self.health[name]
        had = h.out or self.cooling(name) > 0
        h.disabled, h.off, h.cooldown_until, h.cooldown_reason = False, False, 0.0, ""
        store = self._store
        gone = (keys.cooldown(store, name), keys.disabled(store, name), keys.off(store, name))
        removed: Any = await store.execute(lambda r: r.delete(*gone))
        return had or bool(removed)

    def state(self, name: str, *, breaker_open: bool, quarantined: bool) -> ModelState:
        """The model's state for the gauge and the ordering."""
        h = self.health[name]
        if quarantined:
            return ModelState.QUARANTINED
        if h.out:
            return ModelState.DISABLED
        if breaker_open:
            return ModelState.OPEN
        if self.cooling(name) > 0:
            return ModelState.COOLING
        if h.error_rate >= 0.5:
            return ModelState.DEGRADED
        return ModelState.HEALTHY

    def order(self, names: Iterable[str]) -> list[str]:
        """Priority order; among equal priorities, healthy models by EWMA latency first."""

        def rank(name: str) -> tuple[int, int, float, int]:
            model, h = self._models[name], self.health[name]
            degraded = 1 if h.error_rate >= 0.5 else 0
            return (model.spec.priority, degraded, h.latency_s or 0.0, model.index)

        return sorted(names, key=rank)
