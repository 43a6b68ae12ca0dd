"""A local stand-in for the few Bybit v5 public REST endpoints the ccxt adapter uses.

It listens on 127.0.0.1 with an OS-assigned port and answers instruments (spot and linear, with
each perpetual's real ``fundingInterval`` in minutes), tickers (spot best bid/ask; linear
funding rate and mark price), order books and klines, in Bybit's response envelope. ``down``
makes every request fail with 503; ``requests`` records the paths asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["BybitServer", "Pair"]


@dataclass
class Pair:
    """What the server knows of one market."""

    base: str
    quote: str = "USDT"
    bid: float = 100.0
    ask: float = 100.1
    bids: list[tuple[float, float]] = field(default_factory=lambda: [(100.0, 1.0), (99.9, 2.0)])
    asks: list[tuple[float, float]] = field(default_factory=lambda: [(100.1, 1.0), (100.2, 2.0)])
    funding_rate: float = 0.0001
    funding_interval_min: int = 480
    mark: float = 100.05
    closes: list[float] = field(default_factory=lambda: [100.0, 101.0, 102.0])

    @property
    def id(self) -> str:
        """Bybit's market id, e.g. ``BTCUSDT``."""
        return f"{self.base}{self.quote}"


def _ok(result: dict[str, Any]) -> web.Response:
    now = int(time.time() * 1000)
    return web.json_response(
        {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now}
    )


class BybitServer:
    """The server; ``await start()`` then point ccxt's ``urls['api']`` at :attr:`url`."""

    def __init__(self, pairs: list[Pair]) -> None:
        self.pairs = {p.id: p for p in pairs}
        self.down = False
        self.requests: list[str] = []
        self.url = ""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_get("/v5/market/tickers", self._tickers)
        app.router.add_get("/v5/market/orderbook", self._orderbook)
        app.router.add_get("/v5/market/kline", self._kline)
        self._runner = web.AppRunner(app)

    async def start(self) -> str:
        """Listen on loopback; returns the base URL."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening."""
        await self._runner.cleanup()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.path}?{request.query_string}")
        if self.down:
            return web.Response(status=503, text="service unavailable")
        response: web.StreamResponse = await handler(request)
        return response

    def _pair(self, request: web.Request) -> Pair | None:
        return self.pairs.get(request.query.get("symbol", ""))

    async def _instruments(self, request: web.Request) -> web.Response:
        category = request.query.get("category")
        rows: list[dict[str, Any]] = []
        if request.query.get("status") == "PreLaunch":
            return _ok({"category": category, "list": rows, "nextPageCursor": ""})
        for pair in self.pairs.values():
            row: dict[str, Any] = {
                "symbol": pair.id,
                "baseCoin": pair.base,
                "quoteCoin": pair.quote,
                "status": "Trading",
                "lotSizeFilter": {
                    "basePrecision": "0.000001",
                    "quotePrecision": "0.00000001",
                    "minOrderQty": "0.000001",
                    "maxOrderQty": "1000000",
                    "minOrderAmt": "1",
                    "maxOrderAmt": "2000000",
                    "qtyStep": "0.000001",
                },
                "priceFilter": {"tickSize": "0.01", "minPrice": "0.01", "maxPrice": "1000000"},
            }
            if category == "spot":
                row |= {"innovation": "0", "marginTrading": "both"}
            elif category == "linear":
                row |= {
                    "contractType": "LinearPerpetual",
                    "launchTime": "1585526400000",
                    "deliveryTime": "0",
                    "deliveryFeeRate": "",
                    "priceScale": "2",
                    "leverageFilter": {
                        "minLeverage": "1",
                        "maxLeverage": "100.00",
                        "leverageStep": "0.01",
                    },
                    "unifiedMarginTrade": True,
                    "fundingInterval": pair.funding_interval_min,
                    "settleCoin": pair.quote,
                    "copyTrading": "both",
                }
            else:
                continue
            rows.append(row)
        return _ok({"category": category, "list": rows, "nextPageCursor": ""})

    async def _tickers(self, request: web.Request) -> web.Response:
        category = request.query.get("category")
        pair = self._pair(request)
        if pair is None:
            return web.json_response({"retCode": 10001, "retMsg": "params error: symbol invalid"})
        row: dict[str, Any] = {
            "symbol": pair.id,
            "bid1Price": str(pair.bid),
            "bid1Size": "1",
            "ask1Price": str(pair.ask),
            "ask1Size": "1",
            "lastPrice": str((pair.bid + pair.ask) / 2),
            "prevPrice24h": str(pair.bid),
            "price24hPcnt": "0",
            "highPrice24h": str(pair.ask),
            "lowPrice24h": str(pair.bid),
            "turnover24h": "1000",
            "volume24h": "10",
        }
        if category == "linear":
            row |= {
                "markPrice": str(pair.mark),
                "indexPrice": str(pair.mark),
                "fundingRate": str(pair.funding_rate),
                "nextFundingTime": str(int(time.time() * 1000) + 3_600_000),
                "openInterest": "100",
            }
        return _ok({"category": category, "list": [row]})

    async def _orderbook(self, request: web.Request) -> web.Response:
        pair = self._pair(request)
        if pair is None:
            return web.json_response({"retCode": 10001, "retMsg": "params error: symbol invalid"})
        limit = int(request.query.get("limit", "25"))
        return _ok(
            {
                "s": pair.id,
                "b": [[str(p), str(s)] for p, s in pair.bids[:limit]],
                "a": [[str(p), str(s)] for p, s in pair.asks[:limit]],
                "ts": int(time.time() * 1000),
                "u": 1,
                "seq": 1,
                "cts": int(time.time() * 1000),
            }
        )

    async def _kline(self, request: web.Request) -> web.Response:
        pair = self._pair(request)
        if pair is None:
            return web.json_response({"retCode": 10001, "retMsg": "params error: symbol invalid"})
        limit = int(request.query.get("limit", "200"))
        closes = pair.closes[-limit:]
        start = (int(time.time()) // 60 - len(closes)) * 60_000
        rows = []
        for i, close in enumerate(closes):
            high, low = close * 1.001, close * 0.999
            opened = str(start + i * 60_000)
            rows.append([opened, str(close), str(high), str(low), str(close), "10", "1000"])
        rows.reverse()  # Bybit answers newest first
        return _ok({"symbol": pair.id, "category": "spot", "list": rows})
