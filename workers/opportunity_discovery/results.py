"""Scan results cached per user, and scan progress, in Redis."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from common.config import OpportunitySettings
from common.metrics import OpportunityMetrics
from common.store import Store
from workers.opportunity_discovery import keys
from workers.opportunity_discovery.scan import ScanResult
from workers.opportunity_discovery.scanners import Candidate

__all__ = ["Progress", "ResultCache", "cache_key", "read_results", "read_status"]

_VERSION = "2"
_PROGRESS_EVERY_S = 0.25
_RESULTS = "results"  # the progress hash's field holding a finished scan's opportunities


def cache_key(  # noqa: PLR0917 - every input that changes the answer is in the key
    user: str,
    owned: Sequence[str],
    strategies: Sequence[str],
    symbols: Sequence[str],
    venues: Sequence[str],
    limit: int,
) -> str:
    """The digest naming one cached result: the user, the strategies they own, the ones run,
    the symbols, the venues and the limit (order-insensitive)."""
    canonical = json.dumps(
        [
            _VERSION,
            user,
            sorted(owned),
            sorted(strategies),
            sorted(symbols),
            sorted(venues),
            limit,
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResultCache:
    """Complete scan results per key; empty results live shorter, partial ones not at all."""

    def __init__(
        self, store: Store, settings: OpportunitySettings, metrics: OpportunityMetrics
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics

    async def get(self, digest: str) -> ScanResult | None:
        """The cached result, if any."""
        key = keys.result(self.store, digest)
        raw: Any = await self.store.execute(lambda r: r.get(key))
        self.metrics.cache.labels("results", "hit" if raw else "miss").inc()
        if not raw:
            return None
        data = json.loads(raw)
        return ScanResult(
            candidates=[
                Candidate(**{**c, "venues": tuple(c["venues"]), "sides": tuple(c["sides"])})
                for c in data["candidates"]
            ],
            missing=[],
            total=data["total"],
            done=data["done"],
        )

    async def put(self, digest: str, result: ScanResult) -> None:
        """Remember a complete result."""
        if result.missing:
            return  # a partial result is not worth repeating
        ttl = (
            self.settings.result_cache_ttl_s
            if result.candidates
            else self.settings.empty_result_ttl_s
        )
        value = json.dumps(
            {
                "candidates": [vars(c) for c in result.candidates],
                "total": result.total,
                "done": result.done,
            }
        )
        key = keys.result(self.store, digest)
        await self.store.execute(lambda r: r.set(key, value, ex=ttl))


class Progress:
    """One scan's progress hash; running updates are written at most every 0.25 s."""

    def __init__(self, store: Store, scan_id: str, now: Callable[[], float]) -> None:
        self.key = keys.scan(store, scan_id)
        self.store = store
        self.now = now
        self._last = -1e18

    async def write(
        self,
        status: str,
        *,
        reason: str = "",
        results: list[dict[str, Any]] | None = None,
        **fields: int,
    ) -> None:
        """Record ``status``, counters and (when a scan ends) its reason and the opportunities
        it found (``eventguard opportunity results``), now."""
        now = self.now()
        self._last = now
        mapping = {k: str(v) for k, v in fields.items()} | {
            "status": status,
            "updated_at": str(now),
        }
        if reason:
            mapping["reason"] = reason
        if results is not None:
            mapping[_RESULTS] = json.dumps(results)
        key = self.key

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, keys.PROGRESS_TTL_S)
                return await pipe.execute()

        await self.store.execute(write)

    async def running(self, result: ScanResult) -> None:
        """A progress callback for the scan engine (throttled)."""
        if result.done < result.total and self.now() - self._last < _PROGRESS_EVERY_S:
            return
        await self.write(
            "running", total=result.total, done=result.done, found=len(result.candidates)
        )


async def read_status(store: Store, scan_id: str) -> dict[str, str] | None:
    """A scan's progress (without its results), if known."""
    key = keys.scan(store, scan_id)
    raw: Any = await store.execute(lambda r: r.hgetall(key))
    return {k.decode(): v.decode() for k, v in raw.items() if k != _RESULTS.encode()} or None


async def read_results(store: Store, scan_id: str) -> list[dict[str, Any]] | None:
    """The opportunities (``opportunity.found`` payloads) of a finished scan; None while it
    runs, when it was refused, or when it is unknown."""
    key = keys.scan(store, scan_id)
    raw: Any = await store.execute(lambda r: r.hget(key, _RESULTS))
    if raw is None:
        return None
    found: list[dict[str, Any]] = json.loads(raw)
    return found
