"""The ccxt adapter against a local Bybit stand-in on loopback (no internet)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from common.config import Settings
from common.config.workers import OpportunitySettings
from common.testing import fast_runtime_settings, run_workers
from schemas.marketplace import StrategyPurchased
from schemas.opportunity import ScanRequested
from tests.unit.opportunity_discovery.bybit_server import BybitServer, Pair
from workers.opportunity_discovery import create
from workers.opportunity_discovery.exchange import (
    CcxtSource,
    ExchangeUnavailable,
    build_client,
    parse_interval_h,
)
from workers.opportunity_discovery.market import BadMarketData, UnknownMarket


@pytest.fixture
async def server() -> AsyncIterator[BybitServer]:
    """A Bybit stand-in with BTC (8 h funding) and ETH (1 h funding)."""
    srv = BybitServer(
        [
            Pair("BTC", funding_rate=0.0001, funding_interval_min=480),
            Pair("ETH", funding_rate=0.00002, funding_interval_min=60),
        ]
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def source(server: BybitServer) -> AsyncIterator[CcxtSource]:
    """The adapter on one venue pointed at the stand-in."""
    src = CcxtSource({"bybit": build_client("bybit", timeout_s=2, base_url=server.url)})
    try:
        yield src
    finally:
        await src.close()


async def test_prices_books_and_bars_come_through_ccxt(
    source: CcxtSource, server: BybitServer
) -> None:
    """Ticker, order book and OHLCV are read from the venue's REST endpoints and parsed."""
    ticker = await source.ticker("bybit", "BTC/USDT")
    assert (ticker.bid, ticker.ask) == (100.0, 100.1)
    book = await source.order_book("bybit", "BTC/USDT", 5)
    assert book.bids == ((100.0, 1.0), (99.9, 2.0))
    assert book.asks == ((100.1, 1.0), (100.2, 2.0))
    bars = await source.ohlcv("bybit", "BTC/USDT", 3)
    assert [b.close for b in bars] == [100.0, 101.0, 102.0]  # oldest first
    assert bars[0].time < bars[-1].time
    assert any(r.startswith("/v5/market/orderbook?") and "limit=5" in r for r in server.requests)
    assert any(r.startswith("/v5/market/kline?") for r in server.requests)


async def test_funding_carries_the_venues_real_interval(source: CcxtSource) -> None:
    """A perpetual settling hourly reports 1 h and one settling every 8 h reports 8 h."""
    btc = await source.funding("bybit", "BTC/USDT")
    eth = await source.funding("bybit", "ETH/USDT")
    assert (btc.rate, btc.interval_h, btc.mark) == (0.0001, 8.0, 100.05)
    assert (eth.rate, eth.interval_h) == (0.00002, 1.0)


def test_funding_intervals_are_parsed_never_assumed() -> None:
    """'8h', '1h' and '480m' parse; a missing interval is refused, not taken as 8 h."""
    assert parse_interval_h("8h") == 8.0
    assert parse_interval_h("1h") == 1.0
    assert parse_interval_h("480m") == 8.0
    with pytest.raises(BadMarketData):
        parse_interval_h(None)


async def test_taker_fee_comes_from_the_venues_market_table(source: CcxtSource) -> None:
    """Spot and perpetual taker fees are the venue's published ones."""
    spot = await source.taker_fee("bybit", "BTC/USDT")
    perp = await source.taker_fee("bybit", "BTC/USDT:USDT")
    assert spot == 0.001
    assert 0 < perp < 0.002


async def test_errors_are_translated_for_the_guard(source: CcxtSource, server: BybitServer) -> None:
    """An unlisted symbol is the caller's mistake; a 503 is retryable trouble at the venue."""
    with pytest.raises(UnknownMarket):
        await source.ticker("bybit", "NOPE/USDT")
    server.down = True
    with pytest.raises(ExchangeUnavailable) as caught:
        await source.order_book("bybit", "BTC/USDT", 5)
    assert caught.value.retryable is True


async def test_markets_load_once_for_concurrent_callers(
    source: CcxtSource, server: BybitServer
) -> None:
    """Concurrent first calls share one market load (single flight)."""
    import asyncio  # noqa: PLC0415 - only this test gathers

    await asyncio.gather(*(source.taker_fee("bybit", "BTC/USDT") for _ in range(5)))
    spot_loads = [r for r in server.requests if r == "/v5/market/instruments-info?category=spot"]
    assert len(spot_loads) == 1


def _two_venue_settings(a: BybitServer, b: BybitServer, **extra: Any) -> Settings:
    return Settings(
        runtime=fast_runtime_settings(handler_timeout_s=30),
        opportunity_discovery=OpportunitySettings(
            market_source="ccxt",
            venues=("left", "right"),
            exchanges={"left": "bybit", "right": "bybit"},
            exchange_urls={"left": a.url, "right": b.url},
            exchange_timeout_s=2,
            **extra,
        ),
    )


async def test_a_scan_over_ccxt_finds_the_cross_venue_spread() -> None:
    """Two venues through ccxt: buy at 100.1 on one, sell at 101 on the other, fees included."""
    cheap = BybitServer([Pair("BTC", asks=[(100.1, 50.0)], bids=[(100.0, 50.0)])])
    dear = BybitServer([Pair("BTC", asks=[(101.1, 50.0)], bids=[(101.0, 50.0)])])
    await cheap.start()
    await dear.start()
    try:
        async with run_workers([("opp", create)], settings=_two_venue_settings(cheap, dear)) as f:
            await f.publish(
                "marketplace.strategy.purchased",
                StrategyPurchased(
                    user_id="u", strategy="spot_arbitrage", asset_filter=["BTC/USDT"]
                ),
            )
            await f.settle()
            request = await f.publish(
                "opportunity.scan.requested", ScanRequested(user_id="u", budget_s=20)
            )
            summary = await f.wait_for(
                "opportunity.scan.completed", lambda e: e.causation_id == request.id, within=20
            )
    finally:
        await cheap.stop()
        await dear.stop()
    assert summary.data.status == "completed", summary.data.reason
    [best] = summary.data.top
    assert best.venues == ["left", "right"]
    cost, proceeds = 100.1 * 1.001, 101.0 * 0.999
    assert math.isclose(best.edge_bps, round((proceeds - cost) / cost * 10_000, 4))
    assert best.risk == "low"


async def test_a_down_venue_opens_its_breaker_and_the_scan_is_partial() -> None:
    """A venue answering 503 is retried under its guard, then named in the summary."""
    up = BybitServer([Pair("BTC"), Pair("ETH")])
    down = BybitServer([Pair("BTC"), Pair("ETH")])
    down.down = True
    await up.start()
    await down.start()
    try:
        async with run_workers([("opp", create)], settings=_two_venue_settings(up, down)) as f:
            f.runtime.guards.instant()
            await f.publish(
                "marketplace.strategy.purchased",
                StrategyPurchased(
                    user_id="u", strategy="momentum", asset_filter=["BTC/USDT", "ETH/USDT"]
                ),
            )
            await f.settle()
            request = await f.publish(
                "opportunity.scan.requested", ScanRequested(user_id="u", budget_s=20)
            )
            summary = await f.wait_for(
                "opportunity.scan.completed", lambda e: e.causation_id == request.id, within=20
            )
            calls = f.metrics.registry.get_sample_value(
                "eventguard_market_data_calls_total", {"exchange": "right", "outcome": "error"}
            )
    finally:
        await up.stop()
        await down.stop()
    assert summary.data.status == "partial"
    assert {m.venue for m in summary.data.missing} == {"right"}
    assert calls is not None
    assert calls >= 1
    assert {m.reason for m in summary.data.missing} <= {
        "breaker open",
        "venue unavailable (ExchangeUnavailable)",
    }


def test_clients_keep_ccxt_rate_limiter_on() -> None:
    """Every venue client throttles to the venue's published request rate."""
    client = build_client("bybit", timeout_s=2, base_url="http://127.0.0.1:9")
    assert client.enableRateLimit is True
    assert client.rateLimit > 0
    assert client.timeout == 2000
    assert set(client.urls["api"].values()) == {"http://127.0.0.1:9"}
