"""A scan of 100 symbols x 3 venues at 50 ms per market-data call, concurrency 15.

Compares wall time with the ideal ceil(work / 15) x 50 ms and reports client CPU per work
item. Writes bench/results/opportunity.json.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from common.config import OpportunitySettings
from common.metrics import Metrics
from common.reliability import Guards
from workers.opportunity_discovery.scan import ScanEngine
from workers.opportunity_discovery.simulator import MarketSimulator

RESULTS = Path(__file__).parent / "results" / "opportunity.json"
LATENCY = 0.05
CONCURRENCY = 15
SYMBOLS = [f"S{i}/USDT" for i in range(100)]
VENUES = ["alpha", "beta", "gamma"]


async def main() -> dict[str, float]:
    settings = OpportunitySettings(concurrency=CONCURRENCY, market_source="simulator")
    best_wall, best_cpu = math.inf, math.inf
    for _ in range(3):
        source = MarketSimulator(latency_s=LATENCY)
        engine = ScanEngine(
            source, settings, guards=Guards(), metrics=Metrics(CollectorRegistry())
        )
        wall, cpu = time.perf_counter(), time.process_time()
        result = await engine.scan(["spot_arbitrage"], SYMBOLS, VENUES, budget_s=60)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        assert source.calls == len(SYMBOLS) * len(VENUES)
        assert not result.missing
    work = len(SYMBOLS) * len(VENUES)
    ideal = math.ceil(work / CONCURRENCY) * LATENCY
    return {
        "work_items": work,
        "wall_s": round(best_wall, 4),
        "ideal_s": round(ideal, 4),
        "ratio_vs_ideal": round(best_wall / ideal, 4),
        "cpu_us_per_item": round(best_cpu / work * 1e6, 1),
    }


if __name__ == "__main__":
    results = asyncio.run(main())
    for key, value in results.items():
        print(f"{key:<16} {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
