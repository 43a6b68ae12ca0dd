"""Market data: the shapes scanners read, validation, and the source interface.

Every number that reaches a scanner has been checked: finite, positive, and not crossed (best
bid below best ask). Anything else raises :class:`BadMarketData`, is counted and discarded,
and never becomes an opportunity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BadMarketData",
    "Candle",
    "Funding",
    "MarketSource",
    "OrderBook",
    "Ticker",
    "UnknownMarket",
    "check_book",
    "check_candles",
    "check_funding",
    "check_ticker",
]


class BadMarketData(ValueError):
    """Market data that must not be used (NaN, negative, crossed)."""


class UnknownMarket(ValueError):
    """The venue does not list the symbol (the request's problem, not the venue's health)."""


@dataclass(frozen=True)
class Ticker:
    """Best bid and ask."""

    bid: float
    ask: float
    time: float


@dataclass(frozen=True)
class OrderBook:
    """Price levels (price, size), best first."""

    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    time: float


@dataclass(frozen=True)
class Funding:
    """A perpetual's funding rate per interval (e.g. 0.0001 every 8 h), and the mark price."""

    rate: float
    interval_h: float
    mark: float
    time: float


@dataclass(frozen=True)
class Candle:
    """One OHLCV bar."""

    time: float
    open: float
    high: float
    low: float
    close: float
    volume: float


class MarketSource(Protocol):
    """Where market data comes from (a venue's API, or the simulator)."""

    async def ticker(self, venue: str, symbol: str) -> Ticker:
        """Best bid/ask of ``symbol`` on ``venue``."""
        ...

    async def order_book(self, venue: str, symbol: str, depth: int) -> OrderBook:
        """The top ``depth`` levels."""
        ...

    async def funding(self, venue: str, symbol: str) -> Funding:
        """The perpetual's current funding."""
        ...

    async def ohlcv(self, venue: str, symbol: str, limit: int) -> list[Candle]:
        """The last ``limit`` bars, oldest first."""
        ...

    async def taker_fee(self, venue: str, symbol: str) -> float:
        """The taker fee rate for ``symbol`` on ``venue`` (0.001 = 10 bps)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _positive(*values: float) -> None:
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise BadMarketData(f"not a positive finite number: {value!r}")


def check_ticker(ticker: Ticker) -> Ticker:
    """``ticker`` when usable; BadMarketData otherwise."""
    _positive(ticker.bid, ticker.ask)
    if ticker.bid > ticker.ask:
        raise BadMarketData(f"crossed: bid {ticker.bid} > ask {ticker.ask}")
    return ticker


def check_book(book: OrderBook) -> OrderBook:
    """``book`` when usable; BadMarketData otherwise."""
    if not book.bids or not book.asks:
        raise BadMarketData("empty side")
    for price, size in (*book.bids, *book.asks):
        _positive(price, size)
    if book.bids[0][0] > book.asks[0][0]:
        raise BadMarketData(f"crossed: bid {book.bids[0][0]} > ask {book.asks[0][0]}")
    return book


def check_funding(funding: Funding) -> Funding:
    """``funding`` when usable (the rate itself may be negative)."""
    if not math.isfinite(funding.rate) or abs(funding.rate) > 0.05:
        raise BadMarketData(f"implausible funding rate {funding.rate!r}")
    _positive(funding.interval_h, funding.mark)
    return funding


def check_candles(candles: list[Candle]) -> list[Candle]:
    """``candles`` when usable."""
    for candle in candles:
        _positive(candle.open, candle.high, candle.low, candle.close)
        if not math.isfinite(candle.volume) or candle.volume < 0:
            raise BadMarketData("bad volume")
        if candle.low > candle.high:
            raise BadMarketData("low above high")
    return candles
