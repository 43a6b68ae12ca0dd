"""Each scanner's answer on a hand-built snapshot, as literal figures worked out by hand (the
working is in each docstring), so a change in any formula shows up as a number."""

from __future__ import annotations

import pytest

from workers.opportunity_discovery import scanners as sc
from workers.opportunity_discovery.market import Candle, Funding, OrderBook, Ticker

T = 1_000.0


def _book(bids: list[tuple[float, float]], asks: list[tuple[float, float]]) -> OrderBook:
    return OrderBook(bids=tuple(bids), asks=tuple(asks), time=T)


def _bars(closes: list[float]) -> list[Candle]:
    return [Candle(T + 60 * i, c, c * 1.001, c * 0.999, c, 10.0) for i, c in enumerate(closes)]


def test_spot_arbitrage_is_79_8202_bps() -> None:
    """Buy 5 at 100 (+0.1%) = 500.5, sell 5 at 101 (-0.1%) = 504.495: 3.995/500.5 = 79.8202
    bps; depth 10 against 4 x 5 gives confidence 0.75."""
    books = {"a": _book([(99, 10)], [(100, 10)]), "b": _book([(101, 10)], [(102, 10)])}
    (found,) = sc.cross_exchange_arbitrage(
        "X/USDT", books, {"a": 0.001, "b": 0.001}, size_usd=500, min_edge_bps=1
    )
    assert found.edge_bps == 79.8202
    assert found.required_capital == 500.5
    assert found.confidence == 0.75


def test_spot_arbitrage_walks_the_book_to_149_2537_bps() -> None:
    """Two units cost 100 + 101 = 100.5 each; sold at 102: 1.5/100.5 = 149.2537 bps."""
    books = {"a": _book([(99, 10)], [(100, 1), (101, 1)]), "b": _book([(102, 5)], [(103, 5)])}
    (found,) = sc.cross_exchange_arbitrage(
        "X/USDT", books, {"a": 0.0, "b": 0.0}, size_usd=200, min_edge_bps=1
    )
    assert (found.venues, found.entry, found.edge_bps) == (("a", "b"), 100.5, 149.2537)


@pytest.mark.parametrize(("horizon_h", "bps"), [(8.0, 3.0), (24.0, 17.0)])
def test_funding_arbitrage_1h_against_8h(horizon_h: float, bps: float) -> None:
    """0.01%/1h is 0.08%/8h; against 0.01%/8h the spread is 0.07% per 8 h. Four fills at
    0.01% cost 0.04%: 8 h held earns 7 - 4 = 3 bps, 24 h earns 21 - 4 = 17 bps."""
    fundings = {
        "hourly": Funding(rate=0.0001, interval_h=1, mark=100, time=T),
        "eight": Funding(rate=0.0001, interval_h=8, mark=100, time=T),
    }
    (found,) = sc.funding_arbitrage(
        "X/USDT",
        fundings,
        {"hourly": 0.0001, "eight": 0.0001},
        size_usd=1_000,
        min_edge_bps=0,
        horizon_h=horizon_h,
    )
    assert found.edge_bps == bps
    assert (found.venues, found.sides) == (("eight", "hourly"), ("long", "short"))


def test_triangular_arbitrage_is_89_6703_bps() -> None:
    """USDT -> BTC at 50000 -> ETH at 0.05 -> USDT at 2530: 2530/2500 = 1.012, times 0.999^3
    for three fees = 1.00896703: 89.6703 bps (the reverse loop loses)."""
    tickers = {
        "BTC/USDT": Ticker(bid=49_990, ask=50_000, time=T),
        "ETH/BTC": Ticker(bid=0.0499, ask=0.05, time=T),
        "ETH/USDT": Ticker(bid=2_530, ask=2_531, time=T),
    }
    found = sc.triangular_arbitrage(
        "v", tickers, 0.001, base="BTC", middle="ETH", quote="USDT", size_usd=1_000, min_edge_bps=1
    )
    assert [(c.symbol, c.edge_bps) for c in found] == [("USDT>BTC>ETH", 89.6703)]


def test_momentum_is_480_bps() -> None:
    """100 -> 110 over 20 bars (+10%): half continues (5%) less two 0.1% fees = 480 bps,
    target 115.5, stop 107.25, confidence at the directional cap 0.6."""
    closes = [100.0] * 5 + [100 + i * 0.5 for i in range(21)]
    (found,) = sc.momentum("v", "X/USDT", _bars(closes), 0.001, size_usd=1_000)
    assert (found.edge_bps, found.target, found.stop) == (480.0, 115.5, 107.25)
    assert (found.sides, found.risk, found.confidence) == (("long",), "high", 0.6)


def test_mean_reversion_is_798_1818_bps() -> None:
    """The last 20 closes average 101; a close of 110 reverting there is 9/110 = 8.1818%, less
    two 0.1% fees = 798.1818 bps; stop halfway further out at 114.5."""
    closes = [100.0, 101.0] * 10 + [110.0]
    (found,) = sc.mean_reversion("v", "X/USDT", _bars(closes), 0.001, size_usd=1_000)
    assert (found.edge_bps, found.target, found.stop) == (798.1818, 101.0, 114.5)
    assert (found.sides, found.risk) == (("short",), "medium")


def test_breakout_is_355_3571_bps() -> None:
    """Prior range 99.9..104.104 (height 4.204); a close at 112 expects the height again:
    4.204/112 = 3.7536%, less two 0.1% fees = 355.3571 bps; stop at the old ceiling."""
    closes = [100.0, 104.0] * 10 + [112.0]
    (found,) = sc.breakout("v", "X/USDT", _bars(closes), 0.001, size_usd=1_000)
    assert found.edge_bps == 355.3571
    assert found.stop == pytest.approx(104.104)
    assert found.target == pytest.approx(116.204)
    assert (found.sides, found.risk) == (("long",), "high")
