"""The opportunity worker's demo story, on the MARKET SIMULATOR (no exchange is called)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from common.testing import Harness
from schemas.marketplace import StrategyPurchased
from schemas.opportunity import ScanRequested
from workers.opportunity_discovery.results import read_status

__all__ = ["prepare", "scenario"]

_SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT"]


async def prepare(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
    """Use the market simulator, with venue 'gamma' failing."""
    return {
        "opportunity_discovery": {
            "market_source": "simulator",
            "venues": ["alpha", "beta", "gamma"],
            "simulator_failing": ["gamma"],
            "simulator_latency_s": 0.01,
        }
    }


async def scenario(env: Harness, say: Callable[[str], None]) -> None:
    """A user buys strategies, scans, and gets ranked opportunities with a partial note."""
    say("opportunity: using the LOCAL MARKET SIMULATOR (venues alpha, beta, gamma; gamma is down)")
    for strategy in ("spot_arbitrage", "funding_arbitrage", "momentum", "breakout"):
        await env.publish(
            "marketplace.strategy.purchased",
            StrategyPurchased(
                user_id="alice", strategy=strategy, credits=10, asset_filter=_SYMBOLS
            ),
        )
    await env.settle()
    say("opportunity: alice bought spot_arbitrage, funding_arbitrage, momentum, breakout")
    request = await env.publish(
        "opportunity.scan.requested",
        ScanRequested(
            user_id="alice",
            strategies=[
                "spot_arbitrage",
                "funding_arbitrage",
                "momentum",
                "breakout",
                "triangular_arbitrage",
            ],
            max_results=8,
        ),
    )
    summary = await env.wait_for(
        "opportunity.scan.completed", lambda e: e.causation_id == request.id, within=30
    )
    data = summary.data
    say(f"opportunity: scan {data.status}: {data.found} opportunities in {data.duration_s:.2f}s")
    for rank, opp in enumerate(data.top, 1):
        say(
            f"  {rank}. {opp.strategy:<18} {opp.symbol:<10} {'/'.join(opp.venues):<12} "
            f"edge {opp.edge_bps:7.1f} bps  conf {opp.confidence:.2f}  risk {opp.risk:<6} "
            f"EV {opp.expected_value:8.3f}"
        )
    reasons: dict[str, int] = {}
    for part in data.missing:
        label = f"{part.strategy}: {part.reason}" + (f" on {part.venue}" if part.venue else "")
        reasons[label] = reasons.get(label, 0) + 1
    for label, count in sorted(reasons.items()):
        say(f"  partial: {count} x {label}")
    progress = await read_status(env.store, data.scan_id)
    say(f"opportunity: eventguard opportunity status {data.scan_id[:8]}... -> {progress}")
