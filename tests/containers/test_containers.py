"""The four workers as four containers of the project image, under load from the host."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from tests.containers.conftest import STOP_GRACE_S, ContainerFleet
from tests.e2e.conftest import FLEET, TOPOLOGIES, LoadFactory, Recorder, assert_clean

pytestmark = [pytest.mark.e2e, pytest.mark.containers]

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "containers.json"


def _write_figures(figures: dict[str, object]) -> None:
    """Merge ``figures`` into bench/results/containers.json when the run asks for results."""
    if not os.environ.get("EVENTGUARD_CONTAINERS_RESULTS"):
        return
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data["e2e"] = figures
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


async def test_fleet_of_containers_drains_on_podman_stop_and_a_new_container_carries_on(
    containers: ContainerFleet, load: LoadFactory, recorder: Recorder
) -> None:
    """Four worker containers under load; `podman stop` of one drains in its grace period, a new
    container carries on, and nothing is lost or handled twice."""
    started = time.monotonic()
    await containers.start(*FLEET)
    ready_s = time.monotonic() - started

    first = containers.container("quarantine")
    assert first.user() == "10001"  # the image's own user, not root
    assert first.root_is_read_only()

    generator = load(seed=7)
    await generator.start(TOPOLOGIES)
    publishing = asyncio.create_task(generator.publish(400, rate=80.0))
    await asyncio.sleep(1.5)

    stopping = time.monotonic()
    await asyncio.to_thread(first.podman_stop)
    drain_s = time.monotonic() - stopping
    exit_code = await first.wait(10)
    await containers.start("quarantine")

    await publishing
    report = await generator.wait(90.0)
    assert_clean(report, generator)
    assert exit_code == 0  # drained and exited by itself, not killed at the end of the grace period
    assert drain_s < STOP_GRACE_S

    figures: dict[str, object] = {
        **report.as_dict(),
        "drain_s": round(drain_s, 2),
        "ready_s": round(ready_s, 2),
        "containers": len(FLEET) + 1,
    }
    recorder.record("containers", **figures)
    _write_figures(figures)
