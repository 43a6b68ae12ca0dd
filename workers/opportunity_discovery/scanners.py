"""Scanners: pure functions from market data to opportunities of one shape.

Edges are in basis points after taker fees on every fill and after slippage: order books are
walked for the intended size where the strategy trades a book (cross-exchange arbitrage);
elsewhere each fill pays an assumed ``slippage_bps``. Confidence is on one 0-1 scale for every
strategy (the chance the stated edge is captured; directional forecasts never rate above 0.6),
so ranking by expected value (edge x capital x confidence) compares like with like. Risk
follows the position's real exposure: a hedged pair is low, a single directional leg never is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.marketplace import STRATEGIES as MARKETPLACE_STRATEGIES
from workers.opportunity_discovery.market import Candle, Funding, OrderBook, Ticker

__all__ = [
    "STRATEGIES",
    "Candidate",
    "breakout",
    "cross_exchange_arbitrage",
    "fill_price",
    "funding_arbitrage",
    "mean_reversion",
    "momentum",
    "triangular_arbitrage",
]

STRATEGIES = MARKETPLACE_STRATEGIES  # one closed set: what can be bought is what can be run


@dataclass(frozen=True)
class Candidate:
    """An opportunity before it is tied to a scan."""

    strategy: str
    symbol: str
    venues: tuple[str, ...]
    sides: tuple[str, ...]
    entry: float
    edge_bps: float
    required_capital: float
    confidence: float
    risk: str
    data_time: float
    exit: float | None = None
    target: float | None = None
    stop: float | None = None

    @property
    def expected_value(self) -> float:
        """Edge x capital x confidence, in quote currency."""
        return self.edge_bps / 10_000 * self.required_capital * self.confidence


def fill_price(levels: Sequence[tuple[float, float]], quantity: float) -> float | None:
    """The average price of filling ``quantity`` against ``levels``; None if too thin."""
    left, cost = quantity, 0.0
    for price, size in levels:
        take = min(left, size)
        cost += take * price
        left -= take
        if left <= 1e-12:
            return cost / quantity
    return None


# The one confidence scale: the estimated chance that the stated edge is actually captured.
# A hedged arbitrage is limited by execution (book depth, legging); a directional signal is a
# forecast, so however strong it never rates above this.
_DIRECTIONAL_MAX = 0.6


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


def cross_exchange_arbitrage(
    symbol: str,
    books: Mapping[str, OrderBook],
    fees: Mapping[str, float],
    *,
    size_usd: float,
    min_edge_bps: float,
) -> list[Candidate]:
    """Buy on one venue, sell on another, both legs at once: hedged, so low risk."""
    out: list[Candidate] = []
    for buy_venue, buy_book in books.items():
        quantity = size_usd / buy_book.asks[0][0]
        buy = fill_price(buy_book.asks, quantity)
        if buy is None:
            continue
        for sell_venue, sell_book in books.items():
            if sell_venue == buy_venue:
                continue
            sell = fill_price(sell_book.bids, quantity)
            if sell is None:
                continue
            cost = buy * (1 + fees[buy_venue])
            proceeds = sell * (1 - fees[sell_venue])
            edge = (proceeds - cost) / cost * 10_000
            if edge < min_edge_bps:
                continue
            depth = min(sum(s for _, s in buy_book.asks), sum(s for _, s in sell_book.bids))
            out.append(
                Candidate(
                    strategy="spot_arbitrage",
                    symbol=symbol,
                    venues=(buy_venue, sell_venue),
                    sides=("buy", "sell"),
                    entry=buy,
                    exit=sell,
                    edge_bps=round(edge, 4),
                    required_capital=round(quantity * buy * (1 + fees[buy_venue]), 6),
                    confidence=_clamp(0.5 + 0.5 * min(1.0, depth / (4 * quantity))),
                    risk="low",
                    data_time=min(buy_book.time, sell_book.time),
                )
            )
    return out


def normalised_8h(funding: Funding) -> float:
    """The funding rate per 8 hours, whatever the venue's interval."""
    return funding.rate * 8.0 / funding.interval_h


def funding_arbitrage(
    symbol: str,
    fundings: Mapping[str, Funding],
    fees: Mapping[str, float],
    *,
    size_usd: float,
    min_edge_bps: float,
    slippage_bps: float = 0.0,
    horizon_h: float = 8.0,
) -> list[Candidate]:
    """Short the perpetual paying the most funding, long the one paying the least: hedged.

    Rates are normalised to 8 hours; the edge is the spread collected over ``horizon_h`` hours
    minus taker fees and ``slippage_bps`` on each of the four fills (open and close both legs).
    """
    if len(fundings) < 2:
        return []
    ranked = sorted(fundings.items(), key=lambda item: normalised_8h(item[1]))
    (long_venue, low), (short_venue, high) = ranked[0], ranked[-1]
    spread = normalised_8h(high) - normalised_8h(low)
    fee_cost = 2 * fees[long_venue] + 2 * fees[short_venue]
    edge = (spread * horizon_h / 8.0 - fee_cost) * 10_000 - 4 * slippage_bps
    if edge < min_edge_bps:
        return []
    return [
        Candidate(
            strategy="funding_arbitrage",
            symbol=symbol,
            venues=(long_venue, short_venue),
            sides=("long", "short"),
            entry=(low.mark + high.mark) / 2,
            edge_bps=round(edge, 4),
            required_capital=round(2 * size_usd, 6),
            confidence=_clamp(0.4 + spread * 1_000),
            risk="low",
            data_time=min(low.time, high.time),
        )
    ]


def triangular_arbitrage(
    venue: str,
    tickers: Mapping[str, Ticker],
    fee: float,
    *,
    base: str,
    middle: str,
    quote: str,
    size_usd: float,
    min_edge_bps: float,
    slippage_bps: float = 0.0,
) -> list[Candidate]:
    """quote -> base -> middle -> quote (and the reverse) on one venue: three taker fills at
    the touch, each paying the fee and ``slippage_bps``."""
    ab, mb, mq = f"{base}/{quote}", f"{middle}/{base}", f"{middle}/{quote}"
    if not all(k in tickers for k in (ab, mb, mq)):
        return []
    keep = (1 - fee) * (1 - slippage_bps / 10_000)
    forward = (1 / tickers[ab].ask) * keep * (1 / tickers[mb].ask) * keep * tickers[mq].bid * keep
    backward = (1 / tickers[mq].ask) * keep * tickers[mb].bid * keep * tickers[ab].bid * keep
    out = []
    for direction, gross, sides in (
        (f"{quote}>{base}>{middle}", forward, ("buy", "buy", "sell")),
        (f"{quote}>{middle}>{base}", backward, ("buy", "sell", "sell")),
    ):
        edge = (gross - 1) * 10_000
        if edge >= min_edge_bps:
            out.append(
                Candidate(
                    strategy="triangular_arbitrage",
                    symbol=direction,
                    venues=(venue,),
                    sides=sides,
                    entry=tickers[ab].ask,
                    edge_bps=round(edge, 4),
                    required_capital=size_usd,
                    confidence=0.6,
                    risk="medium",  # three sequential fills on one venue: legging risk
                    data_time=min(t.time for t in tickers.values()),
                )
            )
    return out


def _bar_close(candles: Sequence[Candle]) -> float:
    """When the last bar's close was observed: its open time plus one bar (bars carry their
    open time, as venues report them)."""
    last = candles[-1].time
    step = last - candles[-2].time if len(candles) > 1 else 0.0
    return last + max(step, 0.0)


def _closes(candles: Sequence[Candle]) -> list[float]:
    return [c.close for c in candles]


@dataclass(frozen=True)
class _Leg:
    """The one unhedged position of a directional strategy, its edge (bps) and the strength of
    its signal (clamped to 0..1 for the confidence)."""

    side: str
    entry: float
    target: float
    stop: float
    edge: float
    strength: float


def _directional(
    strategy: str,
    venue: str,
    symbol: str,
    candles: Sequence[Candle],
    leg: _Leg,
    *,
    size_usd: float,
    risk: str,
) -> list[Candidate]:
    """The candidate of a directional strategy: ``leg`` on one venue, its confidence scaled
    from the leg's strength up to the directional ceiling."""
    return [
        Candidate(
            strategy=strategy,
            symbol=symbol,
            venues=(venue,),
            sides=(leg.side,),
            entry=leg.entry,
            target=leg.target,
            stop=leg.stop,
            edge_bps=round(leg.edge, 4),
            required_capital=size_usd,
            confidence=_DIRECTIONAL_MAX * _clamp(leg.strength),
            risk=risk,
            data_time=_bar_close(candles),
        )
    ]


def momentum(
    venue: str,
    symbol: str,
    candles: Sequence[Candle],
    fee: float,
    *,
    size_usd: float,
    lookback: int = 20,
    threshold: float = 0.02,
    slippage_bps: float = 0.0,
) -> list[Candidate]:
    """A strong move over ``lookback`` bars, ridden in its direction: one unhedged leg."""
    if len(candles) <= lookback:
        return []
    closes = _closes(candles)
    change = closes[-1] / closes[-1 - lookback] - 1
    if abs(change) < threshold:
        return []
    expected = abs(change) / 2  # assume half the move continues
    edge = (expected - 2 * fee) * 10_000 - 2 * slippage_bps  # in and out
    if edge <= 0:
        return []
    last = closes[-1]
    up = change > 0
    target = last * (1 + expected if up else 1 - expected)
    stop = last * (1 - expected / 2 if up else 1 + expected / 2)
    leg = _Leg("long" if up else "short", last, target, stop, edge, abs(change) / (4 * threshold))
    return _directional("momentum", venue, symbol, candles, leg, size_usd=size_usd, risk="high")


def mean_reversion(
    venue: str,
    symbol: str,
    candles: Sequence[Candle],
    fee: float,
    *,
    size_usd: float,
    window: int = 20,
    z_entry: float = 2.0,
    slippage_bps: float = 0.0,
) -> list[Candidate]:
    """A close far from its moving average, traded back toward it: one unhedged leg."""
    if len(candles) < window:
        return []
    closes = _closes(candles)[-window:]
    mean = statistics.fmean(closes)
    spread = statistics.pstdev(closes)
    if spread == 0:
        return []
    z = (closes[-1] - mean) / spread
    if abs(z) < z_entry:
        return []
    last = closes[-1]
    expected = abs(last - mean) / last
    edge = (expected - 2 * fee) * 10_000 - 2 * slippage_bps  # in and out
    if edge <= 0:
        return []
    strength = (abs(z) - z_entry) / 2 + 0.3
    leg = _Leg("short" if z > 0 else "long", last, mean, last + (last - mean) / 2, edge, strength)
    return _directional(
        "mean_reversion", venue, symbol, candles, leg, size_usd=size_usd, risk="medium"
    )


def breakout(
    venue: str,
    symbol: str,
    candles: Sequence[Candle],
    fee: float,
    *,
    size_usd: float,
    lookback: int = 20,
    slippage_bps: float = 0.0,
) -> list[Candidate]:
    """A close above the highest high of the previous ``lookback`` bars: long, stop below."""
    if len(candles) <= lookback:
        return []
    prior = candles[-1 - lookback : -1]
    ceiling = max(c.high for c in prior)
    floor = min(c.low for c in prior)
    last = candles[-1].close
    if last <= ceiling:
        return []
    height = ceiling - floor
    expected = height / last
    edge = (expected - 2 * fee) * 10_000 - 2 * slippage_bps  # in and out
    if edge <= 0 or not math.isfinite(edge):
        return []
    strength = 0.3 + (last - ceiling) / max(height, 1e-12)
    leg = _Leg("long", last, last + height, ceiling, edge, strength)
    return _directional("breakout", venue, symbol, candles, leg, size_usd=size_usd, risk="high")
