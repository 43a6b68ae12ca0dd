"""The opportunity discovery worker: market scans for the strategies a user owns.

Redis keys (``<prefix>opp:``): ``ent:<user>`` hash strategy -> expiry (epoch s, 0 = none);
``filter:<user>`` the user's asset filter (JSON list); ``scan:<id>`` a scan's progress (hash,
one day); ``result:<hash>`` cached results per user, strategy set and filter.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from common.bus.router import Emit
from common.errors import ConfigError
from common.logging import get_logger
from common.service import AdminRoute, BaseService, WorkerContext
from schemas.envelope import Envelope, new_event
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import MissingPart, OpportunityFound, ScanCompleted, ScanRequested
from workers.opportunity_discovery import admin
from workers.opportunity_discovery.market import MarketSource
from workers.opportunity_discovery.scan import Missing, ScanEngine, ScanResult
from workers.opportunity_discovery.scanners import STRATEGIES, Candidate
from workers.opportunity_discovery.simulator import MarketSimulator

__all__ = ["OpportunityDiscovery"]

_log = get_logger("eventguard.opportunity_discovery")
_PROGRESS_TTL_S = 24 * 3600
_RESULT_VERSION = "1"
_TOP_IN_SUMMARY = 20


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class OpportunityDiscovery(BaseService):
    """Entitlements, scans, results."""

    name = "opportunity_discovery"

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        source: MarketSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ctx)
        self.settings = ctx.settings.opportunity_discovery
        self.clock = clock
        self._unavailable: str | None = None
        if source is None and self.settings.market_source != "simulator":
            # Routes are still registered (topology and schema export read them); start()
            # refuses to run without a real market source rather than pretend.
            self._unavailable = (
                "EVENTGUARD_OPPORTUNITY_DISCOVERY__MARKET_SOURCE: only 'simulator' is built so "
                "far; the ccxt adapter is not"
            )
        if source is None:
            source = MarketSimulator(
                seed=self.settings.simulator_seed,
                latency_s=self.settings.simulator_latency_s,
                failing=set(self.settings.simulator_failing),
                clock=clock,
            )
        self.source = source
        self.engine = ScanEngine(
            source, self.settings, guards=ctx.guards, metrics=ctx.metrics, clock=clock
        )
        self._m = ctx.metrics.opportunity
        budget = self.settings.default_budget_s
        self.router.add(
            "opportunity.scan.requested",
            self.on_scan,
            timeout_s=max(300.0, budget * 2),
            reply=frozenset({"opportunity.scan.completed"}),
        )
        self.router.add("marketplace.strategy.purchased", self.on_purchased)
        self.router.add("marketplace.strategy.revoked", self.on_revoked)

    async def start(self) -> None:
        """Refuse to start without a usable market source."""
        if self._unavailable is not None:
            raise ConfigError(self._unavailable)

    def key(self, *parts: str) -> str:
        """A key of this worker."""
        return self.ctx.store.key("opp", *parts)

    # -- entitlements --------------------------------------------------------------------------

    async def on_purchased(self, event: Envelope[StrategyPurchased]) -> Emit:
        """Record that the user owns the strategy (until its expiry)."""
        data = event.data
        expires = data.expires_at.timestamp() if data.expires_at else 0.0
        ent, flt = self.key("ent", data.user_id), self.key("filter", data.user_id)
        value = json.dumps(data.asset_filter) if data.asset_filter is not None else None

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(ent, data.strategy, str(expires))
                if value is not None:
                    pipe.set(flt, value)
                return await pipe.execute()

        await self.ctx.store.execute(write)
        _log.info("entitlement.granted", user=data.user_id, strategy=data.strategy)
        return []

    async def on_revoked(self, event: Envelope[StrategyRevoked]) -> Emit:
        """Forget the strategy for the user."""
        key = self.key("ent", event.data.user_id)
        await self.ctx.store.execute(lambda r: r.hdel(key, event.data.strategy))
        return []

    async def owned(self, user_id: str) -> tuple[dict[str, float], list[str] | None, bool]:
        """(strategy -> expiry of what the user owns now, the asset filter, user known)."""
        ent, flt = self.key("ent", user_id), self.key("filter", user_id)
        raw: Any = await self.ctx.store.execute(lambda r: r.hgetall(ent))
        raw_filter: Any = await self.ctx.store.execute(lambda r: r.get(flt))
        now = self.clock()
        owned = {}
        for strategy, expiry in raw.items():
            until = float(expiry)
            if until == 0 or until > now:
                owned[strategy.decode()] = until
        assets = json.loads(raw_filter) if raw_filter else None
        return owned, assets, bool(raw)

    # -- the scan ------------------------------------------------------------------------------

    async def on_scan(self, event: Envelope[ScanRequested]) -> Emit:
        """Scan for the user's strategies; answer with opportunities and one summary."""
        started = self.clock()
        request = event.data
        scan_id = event.id
        owned, assets, known = await self.owned(request.user_id)
        refused = self._refusal(request, owned, assets, known)
        missing: list[Missing] = []
        if refused is not None:
            return [self._summary(event, "refused", refused, [], missing, started)]
        wanted = request.strategies or sorted(owned)
        for strategy in wanted:
            if strategy not in STRATEGIES:
                missing.append(Missing(strategy, None, None, "unknown strategy"))
            elif strategy not in owned:
                missing.append(Missing(strategy, None, None, "not owned"))
        strategies = [s for s in wanted if s in owned and s in STRATEGIES]
        symbols = self._symbols(request, assets)
        venues = list(request.venues or self.settings.venues)
        if not strategies:
            return [
                self._summary(event, "refused", "no owned strategy to run", [], missing, started)
            ]
        await self._progress(scan_id, status="running", total=0, done=0, found=0)
        cache_key = self._cache_key(
            request.user_id, strategies, symbols, venues, request.max_results
        )
        cached = await self._cached(cache_key)
        if cached is not None:
            result = cached
        else:
            result = await self.engine.scan(
                strategies,
                symbols,
                venues,
                budget_s=min(request.budget_s, self.settings.default_budget_s * 6),
                progress=lambda r: self._progress(
                    scan_id, status="running", total=r.total, done=r.done, found=len(r.candidates)
                ),
            )
            await self._store_result(cache_key, result)
        top = result.candidates[: request.max_results]
        missing += result.missing
        status = "partial" if missing else "completed"
        reason = f"{len(missing)} part(s) missing" if missing else ""
        found = [self._found(event, c) for c in top]
        for candidate in top:
            self._m.found.labels(candidate.strategy).inc()
        summary = self._summary(event, status, reason, top, missing, started)
        await self._progress(
            scan_id, status=status, total=result.total, done=result.done, found=len(top)
        )
        return [*found, summary]

    def _refusal(
        self, request: ScanRequested, owned: dict[str, float], assets: list[str] | None, known: bool
    ) -> str | None:
        if not known:
            return f"unknown user {request.user_id!r}: owns no strategy"
        if request.symbols is not None and not request.symbols:
            return "empty asset filter"
        symbols = self._symbols(request, assets)
        if not symbols:
            return "the asset filter leaves no asset to scan"
        if len(symbols) > self.settings.max_symbols:
            return f"asset filter too large: {len(symbols)} > {self.settings.max_symbols}"
        if request.venues is not None and not request.venues:
            return "empty venue list"
        if not owned:
            return "every strategy of this user has expired"
        return None

    def _symbols(self, request: ScanRequested, assets: list[str] | None) -> list[str]:
        symbols = list(dict.fromkeys(request.symbols or assets or []))
        if assets is not None:
            symbols = [s for s in symbols if s in assets]
        return symbols

    # -- caching and progress ------------------------------------------------------------------

    @staticmethod
    def _cache_key(
        user: str,
        strategies: Sequence[str],
        symbols: Sequence[str],
        venues: Sequence[str],
        limit: int,
    ) -> str:
        canonical = json.dumps(
            [_RESULT_VERSION, user, sorted(strategies), sorted(symbols), sorted(venues), limit]
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def _cached(self, cache_key: str) -> ScanResult | None:
        key = self.key("result", cache_key)
        raw: Any = await self.ctx.store.execute(lambda r: r.get(key))
        self._m.cache.labels("results", "hit" if raw else "miss").inc()
        if not raw:
            return None
        data = json.loads(raw)
        return ScanResult(
            candidates=[
                Candidate(**{**c, "venues": tuple(c["venues"]), "sides": tuple(c["sides"])})
                for c in data["candidates"]
            ],
            missing=[Missing(**m) for m in data["missing"]],
            total=data["total"],
            done=data["done"],
        )

    async def _store_result(self, cache_key: str, result: ScanResult) -> None:
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
                "missing": [],
                "total": result.total,
                "done": result.done,
            }
        )
        key = self.key("result", cache_key)
        await self.ctx.store.execute(lambda r: r.set(key, value, ex=ttl))

    async def _progress(self, scan_id: str, **fields: Any) -> None:
        key = self.key("scan", scan_id)
        mapping = {k: str(v) for k, v in fields.items()} | {"updated_at": str(self.clock())}

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, _PROGRESS_TTL_S)
                return await pipe.execute()

        await self.ctx.store.execute(write)

    async def status(self, scan_id: str) -> dict[str, str] | None:
        """A scan's progress, if known."""
        key = self.key("scan", scan_id)
        raw: Any = await self.ctx.store.execute(lambda r: r.hgetall(key))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    # -- events --------------------------------------------------------------------------------

    def _payload(self, event: Envelope[ScanRequested], c: Candidate) -> OpportunityFound:
        now = self.clock()
        return OpportunityFound(
            scan_id=event.id,
            user_id=event.data.user_id,
            strategy=c.strategy,
            symbol=c.symbol,
            venues=list(c.venues),
            sides=list(c.sides),
            entry=c.entry,
            exit=c.exit,
            target=c.target,
            stop=c.stop,
            edge_bps=c.edge_bps,
            required_capital=c.required_capital,
            confidence=c.confidence,
            risk=c.risk,
            expected_value=round(c.expected_value, 6),
            data_time=_when(c.data_time),
            staleness_s=max(0.0, now - c.data_time),
        )

    def _found(self, event: Envelope[ScanRequested], c: Candidate) -> Envelope[Any]:
        return new_event(
            "opportunity.found", self._payload(event, c), source=self.name, causation=event
        )

    def _summary(  # noqa: PLR0917 - every part of the summary, in the order it reads
        self,
        event: Envelope[ScanRequested],
        status: str,
        reason: str,
        top: list[Candidate],
        missing: list[Missing],
        started: float,
    ) -> Envelope[Any]:
        duration = max(0.0, self.clock() - started)
        self._m.scans.labels(status).inc()
        self._m.scan_time.observe(duration)
        data = ScanCompleted(
            scan_id=event.id,
            user_id=event.data.user_id,
            status=status,
            reason=reason,
            found=len(top),
            top=[self._payload(event, c) for c in top[:_TOP_IN_SUMMARY]],
            missing=[
                MissingPart(strategy=m.strategy, venue=m.venue, symbol=m.symbol, reason=m.reason)
                for m in missing[:10_000]
            ],
            partial=bool(missing),
            duration_s=duration,
        )
        return new_event("opportunity.scan.completed", data, source=self.name, causation=event)

    def admin_routes(self) -> list[AdminRoute]:
        """Scan status under /admin/opportunity/."""
        return admin.routes(self)
