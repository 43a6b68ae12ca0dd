"""Soak: the fleet at a steady rate for a long time, with each worker's resident memory sampled.

``make soak`` runs 30 minutes (``EVENTGUARD_SOAK_SECONDS=1800``); run by hand it defaults to
60 s. Memory must stop growing after warm-up: bounded caches, no leaked tasks or channels.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from tests.e2e.conftest import (
    FLEET,
    MIB,
    TOPOLOGIES,
    Fleet,
    LoadFactory,
    Recorder,
    assert_clean,
)

pytestmark = [pytest.mark.soak, pytest.mark.e2e, pytest.mark.integration]

RATE = 40.0  # per second: modest on two cores
GROWTH_BOUND_MIB = 32.0  # per worker, between the first and the last quarter after warm-up


@pytest.mark.timeout(0)
async def test_steady_load_keeps_every_workers_memory_bounded(
    fleet: Fleet, load: LoadFactory, recorder: Recorder
) -> None:
    """At a steady rate nothing is lost and no worker's resident memory keeps growing."""
    seconds = float(os.environ.get("EVENTGUARD_SOAK_SECONDS", "60"))
    processes = await fleet.start(*FLEET)
    generator = load(poison_share=0.1)
    await generator.start(TOPOLOGIES)
    samples: dict[str, list[tuple[float, int]]] = {p.worker: [] for p in processes}
    started = time.monotonic()
    publishing = asyncio.create_task(generator.publish(int(seconds * RATE), rate=RATE))
    while not publishing.done():
        for process in processes:
            samples[process.worker].append((time.monotonic() - started, process.rss()))
        await asyncio.wait({publishing}, timeout=max(1.0, seconds / 120))
    await publishing
    report = await generator.wait(120)
    assert_clean(report, generator)
    warm_up = min(30.0, seconds / 3)
    memory = {}
    for worker, series in samples.items():
        warm = [rss for t, rss in series if t >= warm_up]
        quarter = max(1, len(warm) // 4)
        first, last = warm[:quarter], warm[-quarter:]
        growth = (sum(last) / len(last) - sum(first) / len(first)) / MIB
        memory[worker] = {
            "start_mib": round(series[0][1] / MIB, 1),
            "warm_mib": round(first[0] / MIB, 1),
            "end_mib": round(series[-1][1] / MIB, 1),
            "max_mib": round(max(rss for _, rss in series) / MIB, 1),
            "growth_mib": round(growth, 1),
        }
    recorder.record("soak", seconds=seconds, rate=RATE, **report.as_dict(), memory=memory)
    for worker, figures in memory.items():
        assert figures["growth_mib"] < GROWTH_BOUND_MIB, (worker, figures)
