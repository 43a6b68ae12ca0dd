"""Request details: filters naming bare assets, requests with nothing to scan, refused scans'
progress, cached results re-screened for staleness, exact market-cache hit accounting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from common.config import OpportunitySettings, Settings
from common.metrics import Metrics
from common.reliability.guard import Guards
from common.service import ServiceFactory, WorkerContext
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.envelope import Envelope
from schemas.marketplace import StrategyPurchased
from schemas.opportunity import ScanRequested
from workers.opportunity_discovery.market import OrderBook
from workers.opportunity_discovery.results import read_status
from workers.opportunity_discovery.scan import ScanEngine
from workers.opportunity_discovery.service import OpportunityDiscoveryService
from workers.opportunity_discovery.simulator import MarketSimulator


class Clock:
    """A settable clock starting now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


class _BetaRich(MarketSimulator):
    """beta quotes 1% above everyone else: a spot arbitrage that always fires."""

    async def order_book(self, venue: str, symbol: str, depth: int) -> OrderBook:
        book = await super().order_book(venue, symbol, depth)
        if venue != "beta":
            return book
        return OrderBook(
            bids=tuple((p * 1.01, s) for p, s in book.bids),
            asks=tuple((p * 1.01, s) for p, s in book.asks),
            time=book.time,
        )


def _settings(**overrides: Any) -> Settings:
    return Settings(
        runtime=fast_runtime_settings(handler_timeout_s=60),
        opportunity_discovery=OpportunitySettings(
            market_source="simulator", venues=("alpha", "beta", "gamma"), **overrides
        ),
    )


def _factory(clock: Clock, source: MarketSimulator) -> ServiceFactory:
    def create(ctx: WorkerContext) -> OpportunityDiscoveryService:
        return OpportunityDiscoveryService(ctx, source=source, now=clock)

    return create


async def _buy(fleet: Harness, assets: list[str] | None) -> None:
    data = StrategyPurchased(user_id="alice", strategy="spot_arbitrage", asset_filter=assets)
    await fleet.publish("marketplace.strategy.purchased", data)
    await fleet.settle()


async def _scan(fleet: Harness, **fields: Any) -> Envelope[Any]:
    sent = await fleet.publish(
        "opportunity.scan.requested", ScanRequested(**{"user_id": "alice", **fields})
    )
    return await fleet.wait_for(
        "opportunity.scan.completed", lambda e: e.causation_id == sent.id, within=20
    )


async def test_bare_and_lowercase_assets_become_pairs_in_the_quote() -> None:
    """A filter of 'btc' and 'ETH' scans BTC/USDT and ETH/USDT; a request may name them so."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, _BetaRich(now=clock)))], settings=_settings()
    ) as fleet:
        await _buy(fleet, ["btc", "ETH"])
        everything = await _scan(fleet)
        narrowed = await _scan(fleet, symbols=["eth/usdt", "SOL"])
    assert everything.data.status == "completed"
    assert {o.symbol for o in everything.data.top} == {"BTC/USDT", "ETH/USDT"}
    assert {o.symbol for o in narrowed.data.top} == {"ETH/USDT"}


async def test_nothing_to_scan_is_refused_and_the_progress_says_why() -> None:
    """No symbols in the request and no filter on the user: refused with that reason, which
    `eventguard opportunity status` reads from the progress record."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator(now=clock)))], settings=_settings()
    ) as fleet:
        await _buy(fleet, None)
        summary = await _scan(fleet)
        status = await read_status(fleet.store, summary.data.scan_id)
    assert summary.data.status == "refused"
    assert summary.data.reason.startswith("no assets to scan")
    assert status is not None
    assert status["status"] == "refused"
    assert status["reason"] == summary.data.reason


async def test_a_cached_result_is_screened_again_for_staleness() -> None:
    """A result served from the cache after its data aged past max_staleness_s offers nothing
    stale and names it, without calling the market again."""
    clock = Clock()
    source = _BetaRich(now=clock)
    settings = _settings(result_cache_ttl_s=300, max_staleness_s=30)
    async with run_workers([("opp", _factory(clock, source))], settings=settings) as fleet:
        await _buy(fleet, ["BTC/USDT"])
        fresh = await _scan(fleet)
        calls = source.calls
        clock.now += 45
        cached = await _scan(fleet)
    assert fresh.data.status == "completed"
    assert fresh.data.top
    assert source.calls == calls
    assert cached.data.top == []
    assert cached.data.status == "partial"
    assert {m.reason for m in cached.data.missing} == {"stale data (45 s old)"}


async def test_market_cache_counts_one_miss_per_fetch_exactly() -> None:
    """Ten concurrent asks for one book are one miss (the fetch) and nine hits (joined)."""
    registry = CollectorRegistry()
    source = MarketSimulator(latency_s=0.01)
    engine = ScanEngine(
        source,
        OpportunitySettings(market_source="simulator"),
        guards=Guards(),
        metrics=Metrics(registry),
    )
    books = await asyncio.gather(*(engine.book("alpha", "BTC/USDT") for _ in range(10)))

    def sample(result: str) -> float | None:
        labels = {"cache": "market", "result": result}
        return registry.get_sample_value("eventguard_opportunity_cache_total", labels)

    assert source.calls == 1
    assert len({id(b) for b in books}) == 1
    assert sample("miss") == 1
    assert sample("hit") == 9
