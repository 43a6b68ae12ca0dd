"""The scan's contract: request/reply, breaker-open parts, cache keys, entitlement expiry in
Redis, bad input named in the summary, bad market data counted, progress via the admin API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.bus.rpc import request
from common.config import OpportunitySettings, Settings
from common.problems import problem_middleware
from common.service import ServiceFactory, WorkerContext
from common.store import Store
from common.testing import Harness, fast_runtime_settings, run_workers
from common.validation import endpoint
from schemas.envelope import Envelope, new_event
from schemas.marketplace import StrategyPurchased
from schemas.opportunity import ScanRequested
from workers.opportunity_discovery import keys
from workers.opportunity_discovery.entitlements import Entitlements
from workers.opportunity_discovery.market import OrderBook
from workers.opportunity_discovery.results import cache_key
from workers.opportunity_discovery.service import OpportunityDiscoveryService
from workers.opportunity_discovery.simulator import MarketSimulator

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


class Clock:
    """A settable clock starting now."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _settings(**overrides: Any) -> Settings:
    return Settings(
        runtime=fast_runtime_settings(handler_timeout_s=60),
        opportunity_discovery=OpportunitySettings(
            market_source="simulator", venues=("alpha", "beta", "gamma"), **overrides
        ),
    )


def _factory(clock: Clock, source: MarketSimulator, holder: dict[str, Any]) -> ServiceFactory:
    def create(ctx: WorkerContext) -> OpportunityDiscoveryService:
        service = OpportunityDiscoveryService(ctx, source=source, now=clock)
        holder["service"] = service
        return service

    return create


async def _buy(fleet: Harness, strategy: str, **fields: Any) -> None:
    data = StrategyPurchased(
        **{"user_id": "alice", "strategy": strategy, "asset_filter": SYMBOLS, **fields}
    )
    await fleet.publish("marketplace.strategy.purchased", data)
    await fleet.settle()


async def _scan(fleet: Harness, **fields: Any) -> Envelope[Any]:
    sent = await fleet.publish(
        "opportunity.scan.requested", ScanRequested(**{"user_id": "alice", **fields})
    )
    return await fleet.wait_for(
        "opportunity.scan.completed", lambda e: e.causation_id == sent.id, within=20
    )


def _answering(request_id: str) -> Callable[[Envelope[Any]], bool]:
    def check(event: Envelope[Any]) -> bool:
        return event.causation_id == request_id

    return check


async def test_request_reply_returns_the_summary_only() -> None:
    """A requester with reply_to gets the one summary back (not every opportunity)."""
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), MarketSimulator(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        event = new_event(
            "opportunity.scan.requested", ScanRequested(user_id="alice"), source="test"
        )
        reply = await request(fleet.producer, event, timeout_s=10)
    assert reply.type == "opportunity.scan.completed"
    assert reply.data.scan_id == event.id
    assert reply.data.status == "completed"


async def test_an_open_breaker_names_the_venue_and_the_rest_is_served() -> None:
    """With gamma's breaker open before the scan, gamma is missing for 'breaker open' and
    opportunities come from alpha and beta only."""
    holder: dict[str, Any] = {}
    source = MarketSimulator()
    async with run_workers(
        [("opp", _factory(Clock(), source, holder))], settings=_settings()
    ) as fleet:
        fleet.runtime.guards.guard("exchange:gamma").breaker.force_open()
        await _buy(fleet, "spot_arbitrage")
        await _buy(fleet, "momentum")
        summary = await _scan(fleet)
    data = summary.data
    assert data.status == "partial"
    assert data.partial
    assert {(m.venue, m.reason) for m in data.missing} == {("gamma", "breaker open")}
    assert "breaker open on gamma" in data.reason
    assert data.top
    assert all("gamma" not in o.venues for o in data.top)


def test_cache_keys_cover_every_input_and_ignore_order() -> None:
    """User, owned set, strategies run, symbols, venues and limit each change the key."""
    base = ("u", ["a", "b"], ["a"], ["X", "Y"], ["v", "w"], 5)
    variants = [
        ("w", ["a", "b"], ["a"], ["X", "Y"], ["v", "w"], 5),
        ("u", ["a"], ["a"], ["X", "Y"], ["v", "w"], 5),
        ("u", ["a", "b"], ["a", "b"], ["X", "Y"], ["v", "w"], 5),
        ("u", ["a", "b"], ["a"], ["X"], ["v", "w"], 5),
        ("u", ["a", "b"], ["a"], ["X", "Y"], ["v"], 5),
        ("u", ["a", "b"], ["a"], ["X", "Y"], ["v", "w"], 6),
    ]
    keys_ = {cache_key(*base)} | {cache_key(*v) for v in variants}
    assert len(keys_) == 1 + len(variants)
    assert cache_key("u", ["b", "a"], ["a"], ["Y", "X"], ["w", "v"], 5) == cache_key(*base)


async def test_empty_results_are_cached_shorter() -> None:
    """A scan that finds nothing is cached with the short TTL, one with results the long one."""
    holder: dict[str, Any] = {}
    redis = fakeredis.FakeAsyncRedis()
    settings = _settings(min_edge_bps=1e6, result_cache_ttl_s=60, empty_result_ttl_s=3)
    async with run_workers(
        [("opp", _factory(Clock(), MarketSimulator(), holder))], settings=settings, redis=redis
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet)
        assert summary.data.found == 0
        [key] = await redis.keys(keys.result(fleet.store, "*"))
        assert 0 < await redis.ttl(key) <= 3


async def test_entitlements_expire_in_redis_and_by_the_clock() -> None:
    """A monthly entitlement stops running after its expiry (injected clock) and its keys
    carry a TTL; a permanent one makes them persistent again."""
    holder: dict[str, Any] = {}
    clock = Clock()
    redis = fakeredis.FakeAsyncRedis()
    until = datetime.fromtimestamp(clock.now, UTC) + timedelta(days=30)
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator(), holder))], settings=_settings(), redis=redis
    ) as fleet:
        await _buy(fleet, "momentum", expires_at=until)
        ent = keys.entitlements(fleet.store, "alice")
        assert 29 * 86400 < await redis.ttl(ent) <= 30 * 86400 + 1
        clock.now += 31 * 86400
        summary = await _scan(fleet, strategies=["momentum"])
        assert summary.data.status == "refused"
        assert "expired" in summary.data.reason
        await _buy(fleet, "breakout")
        assert await redis.ttl(ent) == -1


async def test_unknown_and_unowned_strategies_and_bad_symbols_are_named() -> None:
    """Each refused part of a request is in the summary with its reason; the rest runs."""
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), MarketSimulator(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "momentum", asset_filter=None)
        summary = await _scan(
            fleet,
            strategies=["momentum", "breakout", "moonshot"],
            symbols=["BTC/USDT", "btc usdt; DROP", "ETH/USDT"],
            venues=["alpha", "nowhere"],
        )
    parts = {(m.strategy, m.venue, m.symbol, m.reason) for m in summary.data.missing}
    assert parts == {
        ("breakout", None, None, "not owned"),
        ("moonshot", None, None, "unknown strategy"),
        (None, None, "btc usdt; DROP", "malformed symbol (BASE/QUOTE)"),
        (None, "nowhere", None, "venue not configured"),
    }
    assert summary.data.status == "partial"


async def test_only_unknown_strategies_is_refused_with_the_reason() -> None:
    """A request naming no strategy the worker knows is refused and says why."""
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), MarketSimulator(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "momentum")
        summary = await _scan(fleet, strategies=["moonshot"])
    assert summary.data.status == "refused"
    assert "unknown strategy" in summary.data.reason


class _CrossedBooks(MarketSimulator):
    """A simulator whose beta books are crossed (bid above ask)."""

    async def order_book(self, venue: str, symbol: str, depth: int) -> OrderBook:
        book = await super().order_book(venue, symbol, depth)
        if venue != "beta":
            return book
        return OrderBook(bids=book.asks, asks=book.bids, time=book.time)


async def test_crossed_books_are_discarded_and_counted() -> None:
    """Crossed data never becomes an opportunity; it is counted per exchange and named."""
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), _CrossedBooks(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet)
        discarded = fleet.metrics.registry.get_sample_value(
            "eventguard_market_data_discarded_total", {"exchange": "beta"}
        )
    assert discarded == len(SYMBOLS)
    assert all("beta" not in o.venues for o in summary.data.top)
    assert {m.venue for m in summary.data.missing} == {"beta"}
    assert all(m.reason.startswith("invalid data: crossed") for m in summary.data.missing)


async def test_progress_is_served_by_the_admin_route() -> None:
    """A finished scan's progress is readable at /admin/opportunity/scans/ID; 404 otherwise."""
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), MarketSimulator(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet)
        service: OpportunityDiscoveryService = holder["service"]
        app = web.Application(middlewares=[problem_middleware])
        for route in service.admin_routes():
            app.router.add_route(route.method, "/admin/" + route.path, endpoint(route))
        async with TestClient(TestServer(app)) as client:
            found = await client.get(f"/admin/opportunity/scans/{summary.data.scan_id}")
            body = await found.json()
            missing = await client.get("/admin/opportunity/scans/nope")
        assert found.status == 200
        assert body["status"] == "completed"
        assert body["done"] == body["total"] == str(len(SYMBOLS))
        assert missing.status == 404
        status = await service.status(summary.data.scan_id)
    assert status == body


async def test_concurrent_scans_share_market_data_calls() -> None:
    """Two users scanning the same markets at once cause one call per (venue, symbol)."""
    holder: dict[str, Any] = {}
    source = MarketSimulator(latency_s=0.01)
    async with run_workers(
        [("opp", _factory(Clock(), source, holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        await _buy(fleet, "spot_arbitrage", user_id="bob")
        first = await fleet.publish("opportunity.scan.requested", ScanRequested(user_id="alice"))
        second = await fleet.publish("opportunity.scan.requested", ScanRequested(user_id="bob"))
        for sent in (first, second):
            summary = await fleet.wait_for(
                "opportunity.scan.completed", _answering(sent.id), within=20
            )
            assert summary.data.status == "completed"
        hits = fleet.metrics.registry.get_sample_value(
            "eventguard_opportunity_cache_total", {"cache": "market", "result": "hit"}
        )
    assert source.calls == len(SYMBOLS) * 3
    assert hits is not None
    assert hits >= len(SYMBOLS) * 3


async def test_stale_data_is_named_not_offered() -> None:
    """Data older than max_staleness_s never becomes an opportunity; the part says why."""
    holder: dict[str, Any] = {}
    clock = Clock()
    stale_source = MarketSimulator(now=lambda: clock.now - 120)
    async with run_workers(
        [("opp", _factory(clock, stale_source, holder))],
        settings=_settings(max_staleness_s=30, min_edge_bps=0),
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet)
    assert summary.data.top == []
    assert summary.data.missing
    assert all(m.reason.startswith("stale data (120 s") for m in summary.data.missing)


class _Dislocated(MarketSimulator):
    """A simulator whose beta prices are ten times too high (a decimal slip at the venue)."""

    async def order_book(self, venue: str, symbol: str, depth: int) -> OrderBook:
        book = await super().order_book(venue, symbol, depth)
        if venue != "beta":
            return book
        return OrderBook(
            bids=tuple((p * 10, s) for p, s in book.bids),
            asks=tuple((p * 10, s) for p, s in book.asks),
            time=book.time,
        )


async def test_an_implausible_edge_is_discarded_and_named() -> None:
    """A spread no market pays after fees is treated as bad data, never offered."""
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), _Dislocated(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet, venues=["alpha", "beta"])
    assert summary.data.top == []
    assert len(summary.data.missing) == len(SYMBOLS)
    assert all(m.reason.startswith("implausible edge") for m in summary.data.missing)


async def test_triangles_use_pairs_that_venues_list() -> None:
    """BTC/USDT runs through ETH/BTC (never BTC/ETH); SOL/USDT through SOL/BTC."""
    asked: list[str] = []

    class Recording(MarketSimulator):
        async def ticker(self, venue: str, symbol: str) -> Any:
            asked.append(symbol)
            return await super().ticker(venue, symbol)

    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), Recording(), holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "triangular_arbitrage", asset_filter=["BTC/USDT", "SOL/USDT"])
        summary = await _scan(fleet, venues=["alpha"])
    assert summary.data.status == "completed"
    assert set(asked) == {"BTC/USDT", "ETH/BTC", "ETH/USDT", "SOL/BTC", "SOL/USDT"}


async def test_a_late_older_purchase_cannot_undo_a_revocation() -> None:
    """Revoked at t, a purchase made before t that arrives afterwards changes nothing; a
    purchase made after t grants again."""
    store_redis = fakeredis.FakeAsyncRedis()
    clock = Clock()
    store = Store(store_redis, prefix="t:")
    rights = Entitlements(store, now=clock)
    now = clock.now
    assert await rights.grant("u", "momentum", expires_at=None, at=now - 10, assets=None)
    assert await rights.revoke("u", "momentum", at=now)
    assert not await rights.grant("u", "momentum", expires_at=None, at=now - 5, assets=None)
    assert (await rights.owned("u")).strategies == {}
    assert await rights.grant("u", "momentum", expires_at=None, at=now + 1, assets=["A/B"])
    owned = await rights.owned("u")
    assert owned.strategies == {"momentum": 0.0}
    assert owned.assets == ["A/B"]


async def test_simulated_funding_differs_by_venue_and_can_pay() -> None:
    """The simulator's funding differs by venue and interval, so the funding scan can fire."""
    source = MarketSimulator()
    symbols = [f"S{i}/USDT" for i in range(20)]
    rates = {
        (v, s): await source.funding(v, s) for v in ("alpha", "beta", "gamma") for s in symbols
    }
    assert {f.interval_h for f in rates.values()} == {1.0, 8.0}
    assert all(len({rates[v, s].rate for v in ("alpha", "beta", "gamma")}) == 3 for s in symbols)
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), source, holder))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "funding_arbitrage", asset_filter=symbols)
        summary = await _scan(fleet)
    assert summary.data.found > 0
    assert all(o.risk == "low" and o.sides == ["long", "short"] for o in summary.data.top)


async def test_concurrency_stays_within_the_setting() -> None:
    """No more market-data calls are in flight at once than the configured concurrency."""
    in_flight, peak = 0, 0

    class Counting(MarketSimulator):
        async def _call(self, venue: str) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await super()._call(venue)
            finally:
                in_flight -= 1

    symbols = [f"S{i}/USDT" for i in range(30)]
    holder: dict[str, Any] = {}
    async with run_workers(
        [("opp", _factory(Clock(), Counting(latency_s=0.002), holder))],
        settings=_settings(concurrency=4),
    ) as fleet:
        await _buy(fleet, "momentum", asset_filter=symbols)
        summary = await _scan(fleet)
    assert summary.data.status == "completed"
    assert peak == 4
