"""The opportunity discovery worker: market scans for the strategies a user owns.

Entitlements come from the marketplace's purchase and revocation events; a scan runs only the
strategies the user owns, over the assets their filter allows, and answers with one
``opportunity.found`` per ranked opportunity and one ``opportunity.scan.completed`` summary
(also sent to the requester's reply_to). Redis keys: see :mod:`.keys`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common.bus.router import Emit
from common.errors import ConfigError, Reject
from common.logging import get_logger
from common.security.admission import requester
from common.security.roles import Role, satisfies
from common.service import AdminRoute, BaseService, WorkerContext
from common.store import Store
from schemas.envelope import Envelope, new_event
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import MissingPart, OpportunityFound, ScanCompleted, ScanRequested
from workers.opportunity_discovery import admin
from workers.opportunity_discovery.entitlements import Entitlements, Owned
from workers.opportunity_discovery.market import MarketSource
from workers.opportunity_discovery.results import Progress, ResultCache, cache_key, read_status
from workers.opportunity_discovery.scan import Missing, ScanEngine
from workers.opportunity_discovery.scanners import STRATEGIES, Candidate
from workers.opportunity_discovery.simulator import MarketSimulator
from workers.opportunity_discovery.sources import build_source

__all__ = ["OpportunityDiscoveryService"]

_log = get_logger("eventguard.opportunity_discovery")
_TOP_IN_SUMMARY = 20
_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")
_ASSET = re.compile(r"^[A-Z0-9]{1,20}$")


def _pair(name: str, quote: str) -> str:
    """``"btc"`` -> ``"BTC/USDT"``, ``"eth/btc"`` -> ``"ETH/BTC"``: a filter may name assets
    or pairs, in either case (anything else is returned for the symbol check to refuse)."""
    upper = name.strip().upper()
    return f"{upper}/{quote}" if _ASSET.match(upper) else upper


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _missing_note(missing: list[Missing]) -> str:
    """``"3 part(s) missing: 2 x breaker open on gamma; 1 x not owned"``, bounded."""
    if not missing:
        return ""
    counts: dict[str, int] = {}
    for part in missing:
        label = part.reason + (f" on {part.venue}" if part.venue else "")
        counts[label] = counts.get(label, 0) + 1
    listed = "; ".join(f"{n} x {label}" for label, n in sorted(counts.items()))
    return f"{len(missing)} part(s) missing: {listed}"[:500]


class OpportunityDiscoveryService(BaseService):
    """Entitlements, scans, results."""

    name = "opportunity_discovery"

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        source: MarketSource | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ctx)
        self.settings = ctx.settings.opportunity_discovery
        self.now = now
        self._unavailable: ConfigError | None = None
        if source is None:
            try:
                source = build_source(self.settings, now=now)
            except ConfigError as error:
                # Routes are still registered (topology and schema export read them); start()
                # refuses to run with a source that cannot work.
                self._unavailable = error
                source = MarketSimulator(failing=set(self.settings.venues))
        self.source = source
        self.engine = ScanEngine(
            source, self.settings, guards=ctx.guards, metrics=ctx.metrics, now=now
        )
        self._m = ctx.metrics.opportunity
        self.results = ResultCache(ctx.store, self.settings, self._m)
        self.entitlements = Entitlements(ctx.store, now=now)
        budget = self.settings.default_budget_s
        self.router.add(
            ScanRequested,
            self.on_scan,
            timeout_s=max(300.0, budget * 2),
            reply=frozenset({"opportunity.scan.completed"}),
        )
        self.router.add(StrategyPurchased, self.on_purchased)
        self.router.add(StrategyRevoked, self.on_revoked)

    async def start(self) -> None:
        """Refuse to start without a usable market source."""
        if self._unavailable is not None:
            raise self._unavailable

    async def stop(self) -> None:
        """Close the market source's connections."""
        await self.source.close()

    @property
    def store(self) -> Store:
        """The worker's Redis store."""
        return self.ctx.store

    # -- entitlements --------------------------------------------------------------------------

    async def on_purchased(self, event: Envelope[StrategyPurchased]) -> Emit:
        """Record that the user owns the strategy (until its expiry)."""
        data = event.data
        granted = await self.entitlements.grant(
            data.user_id,
            data.strategy,
            expires_at=data.expires_at.timestamp() if data.expires_at else None,
            at=event.time.timestamp(),
            assets=data.asset_filter,
        )
        outcome = "entitlement.granted" if granted else "entitlement.superseded"
        _log.info(outcome, user=data.user_id, strategy=data.strategy)
        return []

    async def on_revoked(self, event: Envelope[StrategyRevoked]) -> Emit:
        """Forget the strategy for the user (and ignore older purchases arriving later)."""
        data = event.data
        await self.entitlements.revoke(data.user_id, data.strategy, at=event.time.timestamp())
        _log.info("entitlement.revoked", user=data.user_id, strategy=data.strategy)
        return []

    # -- the scan ------------------------------------------------------------------------------

    async def on_scan(self, event: Envelope[ScanRequested]) -> Emit:
        """Scan for the user's strategies; answer with opportunities and one summary."""
        started = time.perf_counter()
        request = event.data
        scan_id = event.id
        _check_scanned_user(event)
        holding = await self.entitlements.owned(request.user_id)
        owned = holding.strategies
        missing: list[Missing] = []
        symbols = self._symbols(request, holding.assets, missing)
        venues = self._venues(request, missing)
        progress = Progress(self.store, scan_id, self.now)
        refused = self._refusal(request, holding, symbols, venues)
        if refused is not None:
            return await self._refuse(event, progress, refused, missing, started)
        wanted = request.strategies or sorted(owned)
        for strategy in wanted:
            if strategy not in STRATEGIES:
                missing.append(Missing(strategy, None, None, "unknown strategy"))
            elif strategy not in owned:
                missing.append(Missing(strategy, None, None, "not owned"))
        strategies = [s for s in wanted if s in owned and s in STRATEGIES]
        if not strategies:
            reasons = sorted({m.reason for m in missing if m.strategy})
            reason = "no owned strategy to run" + (f" ({', '.join(reasons)})" if reasons else "")
            return await self._refuse(event, progress, reason, missing, started)
        await progress.write("running", total=0, done=0, found=0)
        digest = cache_key(
            request.user_id, sorted(owned), strategies, symbols, venues, request.max_results
        )
        cached = await self.results.get(digest)
        if cached is not None:
            result = cached
            self.engine.screen(result)  # what was fresh when cached may be stale by now
        else:
            result = await self.engine.scan(
                strategies,
                symbols,
                venues,
                budget_s=min(request.budget_s, self.settings.default_budget_s * 6),
                progress=progress.running,
            )
            await self.results.put(digest, result)
        top = result.candidates[: request.max_results]
        missing += result.missing
        status = "partial" if missing else "completed"
        reason = _missing_note(missing)
        found = [self._found(event, c) for c in top]
        for candidate in top:
            self._m.found.labels(candidate.strategy).inc()
        summary = self._summary(event, status, reason, top, missing, started)
        await progress.write(
            status,
            reason=reason,
            results=[e.data.model_dump(mode="json") for e in found],
            total=result.total,
            done=result.done,
            found=len(top),
        )
        return [*found, summary]

    async def _refuse(
        self,
        event: Envelope[ScanRequested],
        progress: Progress,
        reason: str,
        missing: list[Missing],
        started: float,
    ) -> Emit:
        """A refused scan: its summary, and its progress record saying why."""
        await progress.write("refused", reason=reason, total=0, done=0, found=0)
        return [self._summary(event, "refused", reason, [], missing, started)]

    def _refusal(
        self, request: ScanRequested, holding: Owned, symbols: list[str], venues: list[str]
    ) -> str | None:
        if not holding.known:
            return f"unknown user {request.user_id!r}: owns no strategy"
        if request.symbols is not None and not request.symbols:
            return "empty asset filter"
        if request.symbols is None and not holding.assets:
            return "no assets to scan: the request names none and the user has no asset filter"
        if not symbols:
            return "the asset filter leaves no asset to scan"
        if len(symbols) > self.settings.max_symbols:
            return f"asset filter too large: {len(symbols)} > {self.settings.max_symbols}"
        if request.venues is not None and not request.venues:
            return "empty venue list"
        if not venues:
            return "no configured venue in the request"
        if not holding.strategies:
            return "every strategy of this user has expired or been revoked"
        return None

    def _symbols(
        self, request: ScanRequested, assets: list[str] | None, missing: list[Missing]
    ) -> list[str]:
        quote = self.settings.quote
        usable: list[str] = []
        for name in dict.fromkeys(request.symbols or assets or []):
            symbol = _pair(name, quote)
            if _SYMBOL.match(symbol):
                usable.append(symbol)
            else:
                missing.append(Missing(None, None, name[:64], "malformed symbol (BASE/QUOTE)"))
        if assets is not None:
            allowed = {_pair(a, quote) for a in assets}
            usable = [s for s in usable if s in allowed]
        return list(dict.fromkeys(usable))

    def _venues(self, request: ScanRequested, missing: list[Missing]) -> list[str]:
        configured = self.settings.venues
        venues = list(dict.fromkeys(request.venues or configured))
        for venue in venues:
            if venue not in configured:
                missing.append(Missing(None, venue, None, "venue not configured"))
        return [v for v in venues if v in configured]

    async def status(self, scan_id: str) -> dict[str, str] | None:
        """A scan's progress, if known."""
        return await read_status(self.store, scan_id)

    # -- events --------------------------------------------------------------------------------

    def _payload(self, event: Envelope[ScanRequested], c: Candidate) -> OpportunityFound:
        now = self.now()
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
            data_time=_when(min(c.data_time, now)),  # a bar still forming closes "now"
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
        duration = max(0.0, time.perf_counter() - started)
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
            partial=status == "partial",
            duration_s=duration,
        )
        return new_event("opportunity.scan.completed", data, source=self.name, causation=event)

    def admin_routes(self) -> list[AdminRoute]:
        """Scan status under /admin/opportunity/."""
        return admin.routes(self)


def _check_scanned_user(event: Envelope[ScanRequested]) -> None:
    """A person may scan only for themselves (operators for anyone); without an actor the
    admitted producer vouches for ``user_id`` (the producer policy lets it ask)."""
    asked = requester(event)
    others = not asked.person or satisfies(asked.role, Role.OPERATOR)
    if not others and event.data.user_id != asked.subject:
        raise Reject(f"{asked.subject!r} may not scan for another user", reason="unauthorized")
