"""One scan: (strategy, asset, venue) work under bounded concurrency and an overall budget.

Market data calls go through each venue's guard and are shared between concurrent scans (a
single-flight cache with a short TTL). When the budget runs out the scan completes with what
it has; every part that did not run is named with its reason (breaker open, timeout, invalid
data, error).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.config import OpportunitySettings
from common.metrics import Metrics
from common.reliability.dedup import RequestDeduplicator
from common.reliability.errors import CircuitOpen
from common.reliability.guard import Guards
from workers.opportunity_discovery import scanners as sc
from workers.opportunity_discovery.market import (
    BadMarketData,
    MarketSource,
    UnknownMarket,
    check_book,
    check_candles,
    check_funding,
    check_ticker,
)

__all__ = ["Missing", "ScanEngine", "ScanResult"]

_BARS = 60
_DEPTH = 10


@dataclass(frozen=True)
class Missing:
    """A part of the scan that did not run."""

    strategy: str | None
    venue: str | None
    symbol: str | None
    reason: str


@dataclass
class ScanResult:
    """Everything one scan found, and what it could not look at."""

    candidates: list[sc.Candidate] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    total: int = 0
    done: int = 0


def _check_fee(fee: float) -> float:
    if not math.isfinite(fee) or not 0 <= fee < 0.05:
        raise BadMarketData(f"implausible taker fee {fee!r}")
    return fee


def _perpetual(symbol: str) -> str:
    base, _, quote = symbol.partition("/")
    return f"{base}/{quote}:{quote}"


def _triangle(symbol: str) -> tuple[str, str, str]:
    """(pivot, middle, quote) of the triangle through ``symbol`` using pairs venues list:
    X/USDT goes through BTC (BTC/USDT, X/BTC, X/USDT); BTC/USDT itself through ETH/BTC."""
    asset, _, quote = symbol.partition("/")
    if asset == "BTC":
        return "BTC", "ETH", quote
    return "BTC", asset, quote


def _reason(error: BaseException) -> str:
    if isinstance(error, CircuitOpen):
        return "breaker open"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, UnknownMarket):
        return "not listed on this venue"
    if isinstance(error, BadMarketData):
        return f"invalid data: {error}"[:200]
    if isinstance(error, ConnectionError) or getattr(error, "retryable", False):
        # Down, 5xx, rate limited: still failing after the guard's retries.
        return f"venue unavailable ({type(error).__name__})"
    return f"error: {type(error).__name__}"


class ScanEngine:
    """Runs scans over one market source."""

    def __init__(
        self,
        source: MarketSource,
        settings: OpportunitySettings,
        *,
        guards: Guards,
        metrics: Metrics,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.settings = settings
        self.guards = guards
        self.metrics = metrics.opportunity
        self.now = now
        self.cache: RequestDeduplicator[Any] = RequestDeduplicator(
            ttl_s=settings.market_cache_ttl_s, max_entries=20_000
        )

    async def fee(self, venue: str, symbol: str) -> float:
        """The taker fee for ``symbol`` on ``venue``: configured, else the venue's own."""
        configured = self.settings.taker_fee.get(venue)
        if configured is not None:
            return configured
        fee: float = await self._data(
            ("fee", venue, symbol), venue, lambda: self.source.taker_fee(venue, symbol), _check_fee
        )
        return fee

    async def _data(
        self,
        key: Hashable,
        venue: str,
        load: Callable[[], Awaitable[Any]],
        check: Callable[[Any], Any],
    ) -> Any:
        led = False  # this call fetched (a miss); otherwise it was served or joined (a hit)

        async def fetch() -> Any:
            nonlocal led
            led = True
            try:
                data = await self.guards.guard(f"exchange:{venue}").call(load)
            except CircuitOpen:
                self.metrics.data_calls.labels(venue, "breaker_open").inc()
                raise
            except TimeoutError:
                self.metrics.data_calls.labels(venue, "timeout").inc()
                raise
            except Exception:
                self.metrics.data_calls.labels(venue, "error").inc()
                raise
            self.metrics.data_calls.labels(venue, "ok").inc()
            try:
                return check(data)
            except BadMarketData:
                self.metrics.discarded.labels(venue).inc()
                raise

        result = await self.cache.run(key, fetch)
        self.metrics.cache.labels("market", "miss" if led else "hit").inc()
        return result

    async def book(self, venue: str, symbol: str) -> Any:
        """A checked order book (cached briefly, shared)."""
        return await self._data(
            ("book", venue, symbol),
            venue,
            lambda: self.source.order_book(venue, symbol, _DEPTH),
            check_book,
        )

    async def funding(self, venue: str, symbol: str) -> Any:
        """Checked funding."""
        return await self._data(
            ("funding", venue, symbol),
            venue,
            lambda: self.source.funding(venue, symbol),
            check_funding,
        )

    async def ticker(self, venue: str, symbol: str) -> Any:
        """A checked ticker."""
        return await self._data(
            ("ticker", venue, symbol),
            venue,
            lambda: self.source.ticker(venue, symbol),
            check_ticker,
        )

    async def bars(self, venue: str, symbol: str) -> Any:
        """Checked OHLCV bars."""
        return await self._data(
            ("bars", venue, symbol),
            venue,
            lambda: self.source.ohlcv(venue, symbol, _BARS),
            check_candles,
        )

    async def scan(
        self,
        strategies: Sequence[str],
        symbols: Sequence[str],
        venues: Sequence[str],
        *,
        budget_s: float,
        progress: Callable[[ScanResult], Awaitable[None]] | None = None,
    ) -> ScanResult:
        """Scan ``symbols`` on ``venues`` with ``strategies`` within ``budget_s``."""
        result = ScanResult()
        run = _Run(self, venues, result)
        units: list[tuple[str, str, str | None]] = []
        for strategy in strategies:
            for symbol in symbols:
                if strategy in {"spot_arbitrage", "funding_arbitrage"}:
                    units.append((strategy, symbol, None))
                else:
                    units.extend((strategy, symbol, venue) for venue in venues)
        result.total = len(units)
        tasks = {asyncio.create_task(run.unit(*unit)): unit for unit in units}
        pending: set[asyncio.Task[list[sc.Candidate]]] = set(tasks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while pending and loop.time() < deadline:
            done, pending = await asyncio.wait(
                pending, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                strategy, symbol, venue = tasks[task]
                result.done += 1
                error = task.exception()
                if error is not None:
                    result.missing.append(Missing(strategy, venue, symbol, _reason(error)))
                else:
                    result.candidates.extend(task.result())
            if progress is not None:
                await progress(result)
        for task in pending:
            task.cancel()
            strategy, symbol, venue = tasks[task]
            result.missing.append(Missing(strategy, venue, symbol, "budget exhausted"))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self.screen(result)
        return result

    def screen(self, result: ScanResult) -> None:
        """Keep the candidates fit to offer now, ranked by expected value; stale or
        implausible ones move to ``result.missing`` with their reason (a cached result is
        screened again when served, so it never outlives ``max_staleness_s``)."""
        now = self.now()
        fresh = []
        for candidate in result.candidates:
            age = now - candidate.data_time
            venue = "/".join(candidate.venues)[:64]
            if age > self.settings.max_staleness_s:
                reason = f"stale data ({age:.0f} s old)"
            elif candidate.edge_bps > self.settings.max_edge_bps:
                # No real market pays this after fees: the data is wrong somewhere.
                for each in candidate.venues:
                    self.metrics.discarded.labels(each).inc()
                reason = f"implausible edge ({candidate.edge_bps:.0f} bps)"
            else:
                fresh.append(candidate)
                continue
            result.missing.append(Missing(candidate.strategy, venue, candidate.symbol, reason))
        result.candidates = sorted(fresh, key=lambda c: c.expected_value, reverse=True)


Bars = Callable[..., list[sc.Candidate]]
_BAR_SCANNERS: dict[str, Bars] = {
    "momentum": sc.momentum,
    "mean_reversion": sc.mean_reversion,
    "breakout": sc.breakout,
}


class _Run:
    """The work units of one scan, sharing its concurrency limit."""

    def __init__(self, engine: ScanEngine, venues: Sequence[str], result: ScanResult) -> None:
        self.engine = engine
        self.venues = list(venues)
        self.result = result
        self.limit = asyncio.Semaphore(engine.settings.concurrency)

    async def bounded(
        self, get: Callable[[str, str], Awaitable[Any]], venue: str, symbol: str
    ) -> Any:
        async with self.limit:
            return await get(venue, symbol)

    async def across(
        self, strategy: str, symbol: str, get: Callable[[str, str], Awaitable[Any]]
    ) -> dict[str, Any]:
        outcomes = await asyncio.gather(
            *(self.bounded(get, v, symbol) for v in self.venues), return_exceptions=True
        )
        found: dict[str, Any] = {}
        for venue, outcome in zip(self.venues, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.result.missing.append(Missing(strategy, venue, symbol, _reason(outcome)))
            else:
                found[venue] = outcome
        return found

    async def fees(self, strategy: str, symbol: str, venues: dict[str, Any]) -> dict[str, float]:
        """Taker fees of the venues that answered; a venue without a fee drops out (named)."""
        outcomes = await asyncio.gather(
            *(self.engine.fee(v, symbol) for v in venues), return_exceptions=True
        )
        fees: dict[str, float] = {}
        for venue, outcome in zip(list(venues), outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self.result.missing.append(Missing(strategy, venue, symbol, _reason(outcome)))
                venues.pop(venue)
            else:
                fees[venue] = outcome
        return fees

    async def unit(self, strategy: str, symbol: str, venue: str | None) -> list[sc.Candidate]:
        engine, s = self.engine, self.engine.settings
        if strategy == "spot_arbitrage":
            books = await self.across(strategy, symbol, engine.book)
            fees = await self.fees(strategy, symbol, books)
            return sc.cross_exchange_arbitrage(
                symbol, books, fees, size_usd=s.trade_size_usd, min_edge_bps=s.min_edge_bps
            )
        if strategy == "funding_arbitrage":
            fundings = await self.across(strategy, symbol, engine.funding)
            fees = await self.fees(strategy, _perpetual(symbol), fundings)
            return sc.funding_arbitrage(
                symbol,
                fundings,
                fees,
                size_usd=s.trade_size_usd,
                min_edge_bps=s.min_edge_bps,
                slippage_bps=s.assumed_slippage_bps,
                horizon_h=s.funding_horizon_h,
            )
        if venue is None:
            raise ValueError(f"{strategy} runs per venue")
        if strategy == "triangular_arbitrage":
            pivot, middle, quote = _triangle(symbol)
            pairs = [f"{pivot}/{quote}", f"{middle}/{pivot}", f"{middle}/{quote}"]
            tickers = await asyncio.gather(*(self.bounded(engine.ticker, venue, p) for p in pairs))
            return sc.triangular_arbitrage(
                venue,
                dict(zip(pairs, tickers, strict=True)),
                await engine.fee(venue, symbol),
                base=pivot,
                middle=middle,
                quote=quote,
                size_usd=s.trade_size_usd,
                min_edge_bps=s.min_edge_bps,
                slippage_bps=s.assumed_slippage_bps,
            )
        bars = await self.bounded(engine.bars, venue, symbol)
        fee = await engine.fee(venue, symbol)
        return _BAR_SCANNERS[strategy](
            venue,
            symbol,
            bars,
            fee,
            size_usd=s.trade_size_usd,
            slippage_bps=s.assumed_slippage_bps,
        )
