"""The opportunity worker: ownership and expiry, partial results, caches, big scans, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from common.bus import headers as h
from common.config import OpportunitySettings, Settings
from common.errors import ConfigError
from common.reliability.breaker import State
from common.service import ServiceFactory, WorkerContext
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.envelope import Actor, Envelope
from schemas.marketplace import StrategyPurchased, StrategyRevoked
from schemas.opportunity import ScanRequested
from workers.opportunity_discovery import create
from workers.opportunity_discovery.service import OpportunityDiscoveryService
from workers.opportunity_discovery.simulator import MarketSimulator

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


class Clock:
    """A settable clock starting now (the simulator's data is stamped with it)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _factory(clock: Clock, source: MarketSimulator) -> ServiceFactory:
    def create(ctx: WorkerContext) -> OpportunityDiscoveryService:
        return OpportunityDiscoveryService(ctx, source=source, now=clock)

    return create


def _settings(**overrides: Any) -> Settings:
    return Settings(
        runtime=fast_runtime_settings(handler_timeout_s=60),
        opportunity_discovery=OpportunitySettings(
            market_source="simulator", venues=("alpha", "beta", "gamma"), **overrides
        ),
    )


async def _buy(
    fleet: Harness, strategy: str, *, user: str = "alice", expires: datetime | None = None
) -> None:
    data = StrategyPurchased(
        user_id=user, strategy=strategy, expires_at=expires, asset_filter=SYMBOLS
    )
    await fleet.publish("marketplace.strategy.purchased", data)
    await fleet.settle()


async def _scan(fleet: Harness, **fields: Any) -> Envelope[Any]:
    request = await fleet.publish(
        "opportunity.scan.requested", ScanRequested(**{"user_id": "alice", **fields})
    )
    return await fleet.wait_for(
        "opportunity.scan.completed", lambda e: e.causation_id == request.id, within=20
    )


async def test_scan_runs_only_owned_strategies_and_reports_the_rest() -> None:
    """A strategy the user does not own is refused for that strategy and named in the summary."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator()))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet, strategies=["spot_arbitrage", "momentum", "nonsense"])
        reasons = {(m.strategy, m.reason) for m in summary.data.missing}
        assert reasons == {("momentum", "not owned"), ("nonsense", "unknown strategy")}
        assert summary.data.status == "partial"
        assert all(o.strategy == "spot_arbitrage" for o in summary.data.top)
        found = fleet.emitted("opportunity.found")
        assert len(found) == summary.data.found


async def test_monthly_access_expires() -> None:
    """After its expiry a strategy no longer runs."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator()))], settings=_settings()
    ) as fleet:
        until = datetime.fromtimestamp(clock.now + 60, UTC)
        await _buy(fleet, "spot_arbitrage", expires=until)
        await _buy(fleet, "momentum")
        first = await _scan(fleet, strategies=["spot_arbitrage"])
        assert first.data.status in {"completed", "partial"}
        assert not [m for m in first.data.missing if m.reason == "not owned"]
        clock.now += 120
        second = await _scan(fleet, strategies=["spot_arbitrage"])
        assert [(m.strategy, m.reason) for m in second.data.missing] == [
            ("spot_arbitrage", "not owned")
        ]


async def test_revoked_strategy_is_not_run() -> None:
    """A revocation removes the entitlement."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator()))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        await _buy(fleet, "momentum")
        await fleet.publish(
            "marketplace.strategy.revoked", StrategyRevoked(user_id="alice", strategy="momentum")
        )
        await fleet.settle()
        summary = await _scan(fleet, strategies=["momentum"])
        assert summary.data.status == "refused"


async def test_failing_venue_gives_partial_results_with_reasons() -> None:
    """With one venue failing the scan completes with the others, names the venue as
    unavailable (or its breaker open, for calls made after it opened), and the breaker opens."""
    clock = Clock()
    source = MarketSimulator(failing={"gamma"})
    async with run_workers([("opp", _factory(clock, source))], settings=_settings()) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet, strategies=["spot_arbitrage"])
        assert summary.data.partial is True
        assert {m.venue for m in summary.data.missing} == {"gamma"}
        assert {m.reason for m in summary.data.missing} <= {
            "breaker open",
            "venue unavailable (VenueDown)",
        }
        breaker = fleet.runtime.guards.guard("exchange:gamma").breaker
        assert breaker.state is State.OPEN
        assert all("gamma" not in o.venues for o in summary.data.top)


async def test_budget_exhausted_completes_with_what_it_has() -> None:
    """A budget shorter than the work ends the scan on time, naming the missing parts."""
    clock = Clock()
    source = MarketSimulator(latency_s=0.05)
    async with run_workers(
        [("opp", _factory(clock, source))], settings=_settings(concurrency=2)
    ) as fleet:
        await _buy(fleet, "momentum")
        summary = await _scan(fleet, strategies=["momentum"], budget_s=0.12)
        assert summary.data.partial
        assert "budget exhausted" in {m.reason for m in summary.data.missing}


async def test_results_and_market_data_are_cached() -> None:
    """A repeated scan is served from the result cache; the key covers strategies and filter."""
    clock = Clock()
    source = MarketSimulator()
    async with run_workers([("opp", _factory(clock, source))], settings=_settings()) as fleet:
        await _buy(fleet, "spot_arbitrage")
        await _buy(fleet, "momentum")
        await _scan(fleet, strategies=["spot_arbitrage"])
        calls = source.calls
        await _scan(fleet, strategies=["spot_arbitrage"])
        assert source.calls == calls  # result cache hit
        await _scan(fleet, strategies=["spot_arbitrage", "momentum"])
        assert source.calls > calls  # another strategy set: another key


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"user_id": "nobody"}, "unknown user"),
        ({"symbols": []}, "empty asset filter"),
        ({"symbols": ["NOT/LISTED"]}, "leaves no asset"),
        ({"venues": []}, "empty venue list"),
    ],
)
async def test_bad_requests_get_a_refused_summary(fields: dict[str, Any], reason: str) -> None:
    """Unknown users and empty or useless filters are answered, not crashed on."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator()))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet, **fields)
        assert summary.data.status == "refused"
        assert reason in summary.data.reason


async def test_absurd_filter_is_refused() -> None:
    """More symbols than the configured maximum is refused with a reason."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator()))], settings=_settings(max_symbols=2)
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        summary = await _scan(fleet)
        assert "too large" in summary.data.reason


async def test_hundred_symbols_on_three_venues() -> None:
    """A 100-symbol, 3-venue scan with latency finishes within its budget, fully."""
    clock = Clock()
    symbols = [f"S{i}/USDT" for i in range(100)]
    source = MarketSimulator(latency_s=0.002)
    async with run_workers([("opp", _factory(clock, source))], settings=_settings()) as fleet:
        data = StrategyPurchased(user_id="alice", strategy="spot_arbitrage", asset_filter=symbols)
        await fleet.publish("marketplace.strategy.purchased", data)
        await fleet.settle()
        summary = await _scan(fleet, budget_s=30)
        assert summary.data.status == "completed"
        assert source.calls == 300
        progress = fleet.runtime.workers["opp"].service
        assert isinstance(progress, OpportunityDiscoveryService)
        status = await progress.status(summary.data.scan_id)
        assert status is not None
        assert status["status"] == "completed"
        assert status["done"] == "100"


async def test_an_unknown_exchange_refuses_start_up_naming_the_setting() -> None:
    """A venue ccxt does not know stops start-up with the variable to fix; nothing simulates."""
    settings = Settings(
        runtime=fast_runtime_settings(),
        opportunity_discovery=OpportunitySettings(venues=("nosuchexchange",)),
    )
    with pytest.raises(ConfigError, match="VENUES"):
        async with run_workers([("opp", create)], settings=settings):
            pass


async def test_a_user_actor_scans_only_for_itself() -> None:
    """A user actor naming someone else's user_id is dead-lettered unauthorized before any
    scan; the same user for itself, or an operator for anyone, is served."""
    clock = Clock()
    async with run_workers(
        [("opp", _factory(clock, MarketSimulator()))], settings=_settings()
    ) as fleet:
        await _buy(fleet, "spot_arbitrage")
        mallory = Actor(subject="mallory", role="user")
        await fleet.publish(
            "opportunity.scan.requested", ScanRequested(user_id="alice"), actor=mallory
        )
        await fleet.settle()
        (dead,) = fleet.dead()
        assert dead.headers[h.REASON] == "unauthorized"
        assert fleet.emitted("opportunity.scan.completed") == []
        for actor in (Actor(subject="alice", role="user"), Actor(subject="olga", role="operator")):
            request = await fleet.publish(
                "opportunity.scan.requested", ScanRequested(user_id="alice"), actor=actor
            )
            request_id = request.id
            await fleet.wait_for(
                "opportunity.scan.completed",
                lambda e: e.causation_id == request_id,  # noqa: B023 - awaited in this iteration
            )
