"""The opportunity worker on the real RabbitMQ and Redis, over the market simulator."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from common.bus.rpc import request
from common.config import Settings
from common.config.workers import OpportunitySettings
from common.service import WorkerContext
from common.store import Store
from schemas.envelope import new_event
from schemas.marketplace import StrategyPurchased
from schemas.opportunity import ScanRequested
from tests.integration.bus.conftest import Rig, open_rig
from workers.opportunity_discovery import OpportunityDiscoveryService, cli
from workers.opportunity_discovery.simulator import MarketSimulator


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, rabbit_url: str, redis_url: str
) -> AsyncIterator[Rig]:
    """A per-test rig on the real servers; everything it declared is deleted afterwards."""
    async with open_rig(request, rabbit_url, redis_url, "opp") as opened:
        yield opened


def _settings() -> Settings:
    return Settings(
        opportunity_discovery=OpportunitySettings(
            market_source="simulator", venues=("alpha", "beta", "gamma")
        )
    )


async def test_buy_then_scan_by_request_reply_with_a_failing_venue(
    rig: Rig, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over RabbitMQ: a purchase is recorded in Redis, a scan answers its requester with a
    partial summary naming the failing venue, and the CLI reads its progress from Redis."""
    broker = await rig.broker("opp")
    store = Store(rig.redis, prefix=rig.prefix)
    ctx = WorkerContext(rig.worker, _settings(), store, broker, rig.publisher(broker), rig.metrics)
    service = OpportunityDiscoveryService(ctx, source=MarketSimulator(failing={"gamma"}))
    await service.start()
    await rig.pipeline(broker, service.router)
    requester = rig.publisher(await rig.broker("requester"))
    try:
        bought = new_event(
            "marketplace.strategy.purchased",
            StrategyPurchased(
                user_id="alice", strategy="spot_arbitrage", asset_filter=["BTC/USDT", "ETH/USDT"]
            ),
            source="it",
        )
        await requester.publish(bought)
        scan = new_event("opportunity.scan.requested", ScanRequested(user_id="alice"), source="it")
        reply = None
        for _ in range(50):  # the purchase is consumed first, but give it a moment
            reply = await request(requester, scan, timeout_s=10)
            if reply.data.status != "refused":
                break
            scan = new_event(
                "opportunity.scan.requested", ScanRequested(user_id="alice"), source="it"
            )
    finally:
        await service.stop()
    assert reply is not None
    assert reply.type == "opportunity.scan.completed"
    assert reply.data.status == "partial"
    assert {m.venue for m in reply.data.missing} == {"gamma"}
    assert all("gamma" not in o.venues for o in reply.data.top)
    settings = Settings(redis_url=SecretStr(redis_url), redis_key_prefix=rig.prefix)
    scan_id = reply.data.scan_id
    code = await cli._status(argparse.Namespace(scan_id=scan_id, json=True), settings)
    assert code == 0
    progress = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # after log lines
    assert progress["status"] == "partial"
    assert progress["done"] == progress["total"] == 2  # numbers, not strings
    code = await cli._results(argparse.Namespace(scan_id=scan_id, json=True), settings)
    assert code == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    found = [o["symbol"] for o in results["opportunities"]]
    assert len(found) == reply.data.found
    assert found[: len(reply.data.top)] == [o.symbol for o in reply.data.top]
