"""Market data from real venues through ccxt's async API (one client per venue).

The adapter only translates: ccxt's own rate limiter stays on (``enableRateLimit``) so each
venue's published request rate is respected, ccxt never retries (the ``exchange:<venue>``
guard in the scan engine does, with its breaker), and ccxt's errors become errors the guard
judges correctly: a network failure is retryable and counts against the venue's breaker; an
unknown symbol is the caller's mistake (a ``ValueError``) and counts against nothing.

Funding comes with the venue's real interval (ccxt's ``interval``, e.g. ``"1h"``/``"8h"``);
a rate whose interval the venue does not state is refused rather than assumed to be 8 h.
Taker fees come from the venue's market table (public; account-specific fee tiers need keys).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors

from common.errors import ExternalCallError
from workers.opportunity_discovery.market import (
    BadMarketData,
    Candle,
    Funding,
    OrderBook,
    Ticker,
    UnknownMarket,
)

__all__ = [
    "CcxtSource",
    "ExchangeRefused",
    "ExchangeUnavailable",
    "build_client",
    "parse_interval_h",
]

_INTERVAL = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_HOURS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


class ExchangeUnavailable(ExternalCallError):
    """The venue did not answer usefully (network, 5xx, rate limited): worth retrying."""

    retryable = True


class ExchangeRefused(ExternalCallError):
    """The venue answered with an error that is not about the request: not retried."""

    retryable = False


def build_client(
    exchange_id: str, *, timeout_s: float, base_url: str | None = None
) -> ccxt_async.Exchange:
    """A ccxt async client with its rate limiter on; ``base_url`` replaces every API URL."""
    cls = getattr(ccxt_async, exchange_id, None)
    if cls is None:
        raise ValueError(f"ccxt has no exchange {exchange_id!r}")
    client: ccxt_async.Exchange = cls(
        {
            "enableRateLimit": True,
            "timeout": int(timeout_s * 1000),
            # Spot for prices, linear perpetuals for funding: nothing else is loaded.
            "options": {"fetchMarkets": {"types": ["spot", "linear"]}},
        }
    )
    if base_url is not None:
        api = client.urls.get("api")
        if isinstance(api, dict):
            client.urls["api"] = dict.fromkeys(api, base_url)
        else:
            client.urls["api"] = base_url
    return client


def parse_interval_h(value: object) -> float:
    """Hours in a ccxt funding interval such as ``"8h"``, ``"1h"`` or ``"480m"``."""
    match = _INTERVAL.match(str(value or ""))
    if match is None:
        raise BadMarketData(f"funding interval not stated by the venue: {value!r}")
    return float(match.group(1)) * _HOURS[match.group(2)]


def _number(value: object, what: str) -> float:
    if value is None:
        raise BadMarketData(f"{what} missing")
    try:
        return float(value)  # type: ignore[arg-type]  # ccxt returns numbers or numeric strings
    except (TypeError, ValueError) as error:
        raise BadMarketData(f"{what} not a number: {value!r}") from error


def _seconds(timestamp_ms: object, fallback: float) -> float:
    return float(timestamp_ms) / 1000 if isinstance(timestamp_ms, int | float) else fallback


class CcxtSource:
    """:class:`~workers.opportunity_discovery.market.MarketSource` over ccxt clients."""

    def __init__(
        self,
        clients: Mapping[str, ccxt_async.Exchange],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.clients = dict(clients)
        self._wall = now  # stamps data the venue sent without a timestamp
        self._loading: dict[str, asyncio.Task[Any]] = {}

    def _client(self, venue: str) -> ccxt_async.Exchange:
        client = self.clients.get(venue)
        if client is None:
            raise UnknownMarket(f"no exchange configured for venue {venue!r}")
        return client

    async def _markets(self, venue: str) -> ccxt_async.Exchange:
        """The venue's client with its markets loaded (once; concurrent callers share it)."""
        client = self._client(venue)
        if client.markets:
            return client
        task = self._loading.get(venue)
        if task is None or task.done():
            task = asyncio.ensure_future(client.load_markets())
            self._loading[venue] = task
        await _translate(asyncio.shield(task))
        return client

    async def _market(self, venue: str, symbol: str) -> tuple[ccxt_async.Exchange, dict[str, Any]]:
        client = await self._markets(venue)
        market = client.markets.get(symbol)
        if market is None:
            raise UnknownMarket(f"{venue} does not list {symbol}")
        return client, market

    async def ticker(self, venue: str, symbol: str) -> Ticker:
        """Best bid and ask."""
        client, _ = await self._market(venue, symbol)
        raw = await _translate(client.fetch_ticker(symbol))
        return Ticker(
            bid=_number(raw.get("bid"), "bid"),
            ask=_number(raw.get("ask"), "ask"),
            time=_seconds(raw.get("timestamp"), self._wall()),
        )

    async def order_book(self, venue: str, symbol: str, depth: int) -> OrderBook:
        """The top ``depth`` levels per side."""
        client, _ = await self._market(venue, symbol)
        raw = await _translate(client.fetch_order_book(symbol, limit=depth))
        return OrderBook(
            bids=tuple((_number(p, "bid"), _number(s, "size")) for p, s, *_ in raw["bids"]),
            asks=tuple((_number(p, "ask"), _number(s, "size")) for p, s, *_ in raw["asks"]),
            time=_seconds(raw.get("timestamp"), self._wall()),
        )

    async def funding(self, venue: str, symbol: str) -> Funding:
        """The linear perpetual's funding rate with the venue's own interval."""
        base, _, quote = symbol.partition("/")
        perpetual = f"{base}/{quote}:{quote}"
        client, _ = await self._market(venue, perpetual)
        if client.has.get("fetchFundingRate"):
            raw = await _translate(client.fetch_funding_rate(perpetual))
        else:
            rates = await _translate(client.fetch_funding_rates([perpetual]))
            raw = rates.get(perpetual)
            if raw is None:
                raise BadMarketData(f"{venue} returned no funding for {perpetual}")
        return Funding(
            rate=_number(raw.get("fundingRate"), "funding rate"),
            interval_h=parse_interval_h(raw.get("interval")),
            mark=_number(raw.get("markPrice"), "mark price"),
            time=_seconds(raw.get("timestamp"), self._wall()),
        )

    async def ohlcv(self, venue: str, symbol: str, limit: int) -> list[Candle]:
        """The last ``limit`` one-minute bars, oldest first."""
        client, _ = await self._market(venue, symbol)
        rows = await _translate(client.fetch_ohlcv(symbol, "1m", limit=limit))
        return [
            Candle(
                time=float(row[0]) / 1000,
                open=_number(row[1], "open"),
                high=_number(row[2], "high"),
                low=_number(row[3], "low"),
                close=_number(row[4], "close"),
                volume=_number(row[5], "volume"),
            )
            for row in rows
        ]

    async def taker_fee(self, venue: str, symbol: str) -> float:
        """The venue's public taker fee for ``symbol``."""
        _, market = await self._market(venue, symbol)
        return _number(market.get("taker"), "taker fee")

    async def close(self) -> None:
        """Close every client's HTTP session."""
        for task in self._loading.values():
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.clients.values()), return_exceptions=True)


async def _translate(call: Any) -> Any:
    """Await a ccxt call, turning its errors into errors the guard judges correctly."""
    try:
        return await call
    except (ccxt_errors.BadSymbol, ccxt_errors.BadRequest) as error:
        raise UnknownMarket(str(error)[:200]) from error
    except ccxt_errors.NetworkError as error:  # timeouts, 5xx, rate limits, maintenance
        raise ExchangeUnavailable(f"{type(error).__name__}: {str(error)[:200]}") from error
    except ccxt_errors.BaseError as error:
        raise ExchangeRefused(f"{type(error).__name__}: {str(error)[:200]}") from error
