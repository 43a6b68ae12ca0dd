"""Scanners on hand-built market snapshots with known answers (fees included)."""

from __future__ import annotations

import math

import pytest

from workers.opportunity_discovery import scanners as sc
from workers.opportunity_discovery.market import (
    BadMarketData,
    Candle,
    Funding,
    OrderBook,
    Ticker,
    check_book,
    check_ticker,
)

T = 1_000.0


def _book(bid: float, ask: float, size: float = 10.0) -> OrderBook:
    return OrderBook(bids=((bid, size),), asks=((ask, size),), time=T)


def test_fill_price_walks_the_book() -> None:
    """Filling past the first level averages over the levels used."""
    assert sc.fill_price(((100.0, 1.0), (101.0, 1.0)), 2.0) == pytest.approx(100.5)
    assert sc.fill_price(((100.0, 1.0),), 2.0) is None


def test_cross_exchange_arbitrage_exact_bps_after_fees() -> None:
    """Buy at 100 on A, sell at 101 on B, 0.1% taker each: edge = (100.899 - 100.1)/100.1."""
    books = {"a": _book(99.0, 100.0), "b": _book(101.0, 102.0)}
    fees = {"a": 0.001, "b": 0.001}
    (found,) = sc.cross_exchange_arbitrage("X/USDT", books, fees, size_usd=500, min_edge_bps=1)
    expected = (101 * 0.999 - 100 * 1.001) / (100 * 1.001) * 10_000
    assert found.edge_bps == pytest.approx(round(expected, 4))
    assert found.venues == ("a", "b")
    assert found.sides == ("buy", "sell")
    assert found.risk == "low"
    assert 0 <= found.confidence <= 1


def test_cross_exchange_arbitrage_includes_slippage() -> None:
    """A thin top level pushes the buy price up; a big size can erase the edge."""
    thin = OrderBook(bids=((99.0, 1.0),), asks=((100.0, 1.0), (100.9, 100.0)), time=T)
    books = {"a": thin, "b": _book(101.0, 102.0, size=100)}
    fees = {"a": 0.001, "b": 0.001}
    small = sc.cross_exchange_arbitrage("X", books, fees, size_usd=50, min_edge_bps=1)
    large = sc.cross_exchange_arbitrage("X", books, fees, size_usd=5_000, min_edge_bps=1)
    assert small
    assert large == []


def test_funding_rates_are_normalised_by_interval() -> None:
    """0.01%/1h equals 0.08%/8h: against 0.01%/8h the hedged spread is 0.07% per 8h."""
    fundings = {
        "hourly": Funding(rate=0.0001, interval_h=1, mark=100, time=T),
        "eight": Funding(rate=0.0001, interval_h=8, mark=100, time=T),
    }
    assert sc.normalised_8h(fundings["hourly"]) == pytest.approx(0.0008)
    (found,) = sc.funding_arbitrage(
        "X", fundings, {"hourly": 0.0001, "eight": 0.0001}, size_usd=1_000, min_edge_bps=0
    )
    assert found.edge_bps == pytest.approx((0.0008 - 0.0001 - 4 * 0.0001) * 10_000)
    assert found.sides == ("long", "short")
    assert found.venues == ("eight", "hourly")  # long the cheap one, short the payer
    assert found.risk == "low"


def test_funding_arbitrage_needs_two_venues_and_an_edge_after_fees() -> None:
    """Equal normalised rates, or one venue, give nothing."""
    same = {
        "a": Funding(rate=0.0001, interval_h=8, mark=100, time=T),
        "b": Funding(rate=0.0001 / 8, interval_h=1, mark=100, time=T),
    }
    assert sc.funding_arbitrage("X", same, {"a": 0.0, "b": 0.0}, size_usd=1, min_edge_bps=0.1) == []
    assert sc.funding_arbitrage("X", {"a": same["a"]}, {"a": 0.0}, size_usd=1, min_edge_bps=0) == []


def test_triangular_arbitrage_exact_bps() -> None:
    """USDT->BTC->ETH->USDT with a mispriced ETH/BTC, three fills at 0.1%."""
    tickers = {
        "BTC/USDT": Ticker(bid=49_990, ask=50_000, time=T),
        "ETH/BTC": Ticker(bid=0.0499, ask=0.05, time=T),
        "ETH/USDT": Ticker(bid=2_530, ask=2_531, time=T),
    }
    found = sc.triangular_arbitrage(
        "v", tickers, 0.001, base="BTC", middle="ETH", quote="USDT", size_usd=1_000, min_edge_bps=1
    )
    forward = (1 / 50_000) * 0.999 * (1 / 0.05) * 0.999 * 2_530 * 0.999
    assert [c.edge_bps for c in found] == [pytest.approx(round((forward - 1) * 10_000, 4))]
    assert found[0].risk == "medium"


def _bars(closes: list[float]) -> list[Candle]:
    return [Candle(T + i, c, c * 1.001, c * 0.999, c, 10.0) for i, c in enumerate(closes)]


def test_momentum_is_never_low_risk() -> None:
    """A 10% rise over the lookback gives a long with a positive edge and high risk."""
    closes = [100.0] * 5 + [100 + i * 0.5 for i in range(21)]
    (found,) = sc.momentum("v", "X", _bars(closes), 0.001, size_usd=1_000)
    assert found.sides == ("long",)
    assert found.risk == "high"
    change = closes[-1] / closes[-21] - 1
    assert found.edge_bps == pytest.approx(round((change / 2 - 0.002) * 10_000, 4))


def test_mean_reversion_trades_back_to_the_mean() -> None:
    """A close far above its 20-bar mean gives a short targeting the mean."""
    closes = [100.0, 101.0] * 10 + [110.0]
    (found,) = sc.mean_reversion("v", "X", _bars(closes), 0.001, size_usd=1_000)
    assert found.sides == ("short",)
    assert found.target == pytest.approx(sum(closes[-20:]) / 20)
    assert found.risk == "medium"


def test_breakout_above_the_range() -> None:
    """A close above the previous 20 highs gives a long stopped at the old ceiling."""
    closes = [100.0, 104.0] * 10 + [112.0]
    (found,) = sc.breakout("v", "X", _bars(closes), 0.001, size_usd=1_000)
    assert found.stop == pytest.approx(104.0 * 1.001)
    assert found.risk == "high"


@pytest.mark.parametrize(
    "ticker",
    [
        Ticker(bid=math.nan, ask=1.0, time=T),
        Ticker(bid=-1.0, ask=1.0, time=T),
        Ticker(bid=2.0, ask=1.0, time=T),
    ],
)
def test_nan_negative_and_crossed_prices_are_refused(ticker: Ticker) -> None:
    """Bad market data never reaches a scanner."""
    with pytest.raises(BadMarketData):
        check_ticker(ticker)
    with pytest.raises(BadMarketData):
        check_book(OrderBook(bids=((ticker.bid, 1),), asks=((ticker.ask, 1),), time=T))


def test_one_confidence_scale_ranks_by_expected_value() -> None:
    """Every candidate's confidence is in [0, 1] and expected value is edge x capital x conf."""
    c = sc.Candidate("momentum", "X", ("v",), ("long",), 1.0, 50.0, 1_000.0, 0.5, "high", T)
    assert c.expected_value == pytest.approx(50 / 10_000 * 1_000 * 0.5)


def test_slippage_is_paid_on_every_fill_where_no_book_is_walked() -> None:
    """Funding pays slippage on 4 fills, triangular on 3, a directional trade on 2."""
    fundings = {
        "hourly": Funding(rate=0.0001, interval_h=1, mark=100, time=T),
        "eight": Funding(rate=0.0001, interval_h=8, mark=100, time=T),
    }
    fees = {"hourly": 0.0001, "eight": 0.0001}
    (funding,) = sc.funding_arbitrage(
        "X", fundings, fees, size_usd=1_000, min_edge_bps=0, slippage_bps=0.5
    )
    assert funding.edge_bps == pytest.approx((0.0008 - 0.0001 - 4 * 0.0001) * 10_000 - 4 * 0.5)
    tickers = {
        "BTC/USDT": Ticker(bid=49_990, ask=50_000, time=T),
        "ETH/BTC": Ticker(bid=0.0499, ask=0.05, time=T),
        "ETH/USDT": Ticker(bid=2_530, ask=2_531, time=T),
    }
    (tri,) = sc.triangular_arbitrage(
        "v",
        tickers,
        0.001,
        base="BTC",
        middle="ETH",
        quote="USDT",
        size_usd=1_000,
        min_edge_bps=1,
        slippage_bps=2,
    )
    keep = 0.999 * 0.9998
    forward = (1 / 50_000) * keep * (1 / 0.05) * keep * 2_530 * keep
    assert tri.edge_bps == pytest.approx(round((forward - 1) * 10_000, 4))
    closes = [100.0] * 5 + [100 + i * 0.5 for i in range(21)]
    (plain,) = sc.momentum("v", "X", _bars(closes), 0.001, size_usd=1_000)
    (slipped,) = sc.momentum("v", "X", _bars(closes), 0.001, size_usd=1_000, slippage_bps=2)
    assert slipped.edge_bps == pytest.approx(plain.edge_bps - 4)


def test_an_unhedged_leg_is_never_low_risk_and_hedged_pairs_are() -> None:
    """Risk follows exposure: directional strategies are medium or high, hedged pairs low."""
    up = [100.0] * 5 + [100 + i * 0.5 for i in range(21)]
    directional = [
        *sc.momentum("v", "X", _bars(up), 0.0, size_usd=1_000),
        *sc.breakout("v", "X", _bars([100.0] * 21 + [110.0]), 0.0, size_usd=1_000),
        *sc.mean_reversion("v", "X", _bars([100.0, 101.0] * 10 + [120.0]), 0.0, size_usd=1_000),
    ]
    assert {c.strategy for c in directional} == {"momentum", "breakout", "mean_reversion"}
    assert all(len(c.sides) == 1 and c.risk != "low" for c in directional)
    books = {"a": _book(99.9, 100.0), "b": _book(101.0, 101.1)}
    (hedged,) = sc.cross_exchange_arbitrage(
        "X", books, {"a": 0.001, "b": 0.001}, size_usd=500, min_edge_bps=0
    )
    assert hedged.sides == ("buy", "sell")
    assert hedged.risk == "low"


def test_a_directional_forecast_never_outranks_execution_certainty() -> None:
    """However strong the move, a directional confidence stays at or below 0.6."""
    rocket = [100.0] * 5 + [100 * 1.01**i for i in range(21)]
    (found,) = sc.momentum("v", "X", _bars(rocket), 0.0, size_usd=1_000)
    assert found.confidence == pytest.approx(0.6)
    assert found.data_time == T + 25 + 1  # the last bar opened at T+25 and closes a bar later


def test_funding_edge_scales_with_the_holding_horizon() -> None:
    """Held 24 h, a 0.07%/8h spread earns three periods before the same four fees."""
    fundings = {
        "hourly": Funding(rate=0.0001, interval_h=1, mark=100, time=T),
        "eight": Funding(rate=0.0001, interval_h=8, mark=100, time=T),
    }
    fees = {"hourly": 0.0001, "eight": 0.0001}
    (day,) = sc.funding_arbitrage("X", fundings, fees, size_usd=1_000, min_edge_bps=0, horizon_h=24)
    assert day.edge_bps == pytest.approx((3 * 0.0007 - 4 * 0.0001) * 10_000)
