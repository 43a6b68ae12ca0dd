"""A market simulator for the demo and tests: nothing else uses it.

Deterministic random walks per (venue, symbol) with venue-specific offsets (so cross-venue
spreads exist), volume tiers in the books, funding that differs by venue and interval (1 h on
some venues, 8 h on others), optional latency per call, and a switch that makes venues fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import Callable

from workers.opportunity_discovery.market import Candle, Funding, OrderBook, Ticker

__all__ = ["MarketSimulator", "VenueDown"]


_QUOTES = frozenset({"USDT", "USDC", "USD"})


class VenueDown(ConnectionError):
    """The simulated venue does not answer."""


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


class MarketSimulator:
    """Simulated venues; prices move a little between calls."""

    def __init__(
        self,
        *,
        seed: int = 7,
        latency_s: float = 0.0,
        failing: set[str] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.latency_s = latency_s
        self.failing = set(failing or ())
        self._now = now
        self.calls = 0

    async def _call(self, venue: str) -> None:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if venue in self.failing:
            raise VenueDown(f"{venue} is down")

    def _mid(self, venue: str, symbol: str, step: int = 0) -> float:
        base, _, quote = symbol.partition("/")
        if quote not in _QUOTES:
            # A cross pair follows its two legs (so triangles close), give or take a small
            # venue-specific dislocation that a triangular scan may catch.
            rng = random.Random(_seed(self.seed, "cross", venue, symbol))  # noqa: S311
            legs = self._mid(venue, f"{base}/USDT", step) / self._mid(venue, f"{quote}/USDT", step)
            return legs * (1 + rng.uniform(-0.003, 0.003))
        base_rng = random.Random(_seed(self.seed, symbol))  # noqa: S311 - a simulation
        level = 10 ** base_rng.uniform(0, 4.5)
        venue_rng = random.Random(_seed(self.seed, venue, symbol))  # noqa: S311
        offset = venue_rng.uniform(-0.004, 0.004)
        drift = math.sin((self._now() + step * 60) / 600 + venue_rng.uniform(0, 6)) * 0.003
        return level * (1 + offset + drift)

    async def ticker(self, venue: str, symbol: str) -> Ticker:
        """Best bid/ask around the venue's mid."""
        await self._call(venue)
        mid = self._mid(venue, symbol)
        return Ticker(bid=mid * 0.9997, ask=mid * 1.0003, time=self._now())

    async def order_book(self, venue: str, symbol: str, depth: int) -> OrderBook:
        """Levels with growing size (volume tiers)."""
        await self._call(venue)
        mid = self._mid(venue, symbol)
        size = 5_000 / mid
        bids = tuple((mid * (1 - 0.0003 * (i + 1)), size * (1 + i)) for i in range(depth))
        asks = tuple((mid * (1 + 0.0003 * (i + 1)), size * (1 + i)) for i in range(depth))
        return OrderBook(bids=bids, asks=asks, time=self._now())

    async def funding(self, venue: str, symbol: str) -> Funding:
        """Funding that differs by venue; some venues settle hourly."""
        await self._call(venue)
        rng = random.Random(_seed(self.seed, "funding", venue, symbol))  # noqa: S311
        interval = 1.0 if rng.random() < 0.4 else 8.0
        rate = rng.uniform(-0.0005, 0.0015) * interval / 8
        return Funding(
            rate=rate, interval_h=interval, mark=self._mid(venue, symbol), time=self._now()
        )

    async def taker_fee(self, venue: str, symbol: str) -> float:
        """A fee tier per venue: 10, 7.5 or 6 bps (no latency: ccxt reads it from its markets)."""
        if venue in self.failing:
            raise VenueDown(f"{venue} is down")
        rng = random.Random(_seed(self.seed, "fee", venue))  # noqa: S311 - a simulation
        return rng.choice((0.001, 0.00075, 0.0006))

    async def close(self) -> None:
        """Nothing to release."""

    async def ohlcv(self, venue: str, symbol: str, limit: int) -> list[Candle]:
        """Bars of a walk whose trend depends on the symbol."""
        await self._call(venue)
        rng = random.Random(_seed(self.seed, "bars", venue, symbol))  # noqa: S311
        trend = rng.uniform(-0.0015, 0.0015)
        price = self._mid(venue, symbol) / (1 + trend) ** limit
        now = self._now()
        bars = []
        for i in range(limit):
            open_ = price
            price *= 1 + trend + rng.gauss(0, 0.002)
            high, low = max(open_, price) * 1.001, min(open_, price) * 0.999
            bars.append(
                Candle(now - (limit - i) * 60, open_, high, low, price, rng.uniform(10, 100))
            )
        return bars
