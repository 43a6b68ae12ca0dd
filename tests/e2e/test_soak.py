"""Soak: a steady rate for a long time, with the worker's resident memory sampled (make soak)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from common.bus.amqp import AmqpBroker
from tests.e2e.conftest import WorkerProcess
from workers.load import LoadGenerator

pytestmark = [pytest.mark.soak, pytest.mark.e2e, pytest.mark.integration]

MIB = 1024 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_steady_load_keeps_memory_bounded(
    fleet_env: dict[str, str], workers: list[WorkerProcess], producer: AmqpBroker, tmp_path: Path
) -> None:
    """At a steady rate, nothing is lost and resident memory stops growing after warm-up."""
    seconds = float(os.environ.get("EVENTGUARD_SOAK_SECONDS", "60"))
    process = WorkerProcess("quarantine", fleet_env, tmp_path / "soak.log")
    workers.append(process)
    process.start()
    await process.ready()
    assert process.process is not None
    pid = process.process.pid
    load = LoadGenerator(producer, user_id="guest", poison_share=0.1)
    await load.start_observing()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    rate = 50.0
    publishing = asyncio.create_task(load.publish(int(seconds * rate), rate=rate))
    while not publishing.done():
        samples.append((time.monotonic() - started, _rss(pid)))
        await asyncio.sleep(5)
    await publishing
    report = await load.wait(120)
    assert report.ok, report.text()
    warm = [rss for t, rss in samples if t >= min(30.0, seconds / 3)]
    growth = (max(warm) - min(warm)) / MIB if warm else 0.0
    low, high = min(warm) / MIB, max(warm) / MIB
    print(f"soak: {report.published} events in {seconds:.0f}s, RSS {low:.0f}-{high:.0f} MiB")
    assert growth < 64, f"resident memory grew by {growth:.0f} MiB after warm-up"
