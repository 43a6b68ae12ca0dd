"""The private cluster (three RabbitMQ nodes, Redis with two replicas and three Sentinels) for
the chaos suite, started once and always cleaned away at the end.

Runs only with ``EVENTGUARD_CHAOS=1`` (``make chaos``): everything under tests/chaos is skipped
otherwise, so ``make test`` never starts a cluster. The nodes come from
``scripts/rabbit-cluster.sh`` and ``scripts/redis-ha.sh`` (own names, ports, cookie, epmd and
data directory; the machine's RabbitMQ and Redis are never touched). Figures are written to
``bench/results/chaos.json`` (or ``$EVENTGUARD_CHAOS_RESULTS``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RABBIT = ROOT / "scripts" / "rabbit-cluster.sh"
REDIS = ROOT / "scripts" / "redis-ha.sh"
_STARTED = time.monotonic()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the suite ``chaos``; skip it unless ``EVENTGUARD_CHAOS=1``."""
    enabled = os.environ.get("EVENTGUARD_CHAOS") == "1"
    for item in items:
        if "tests/chaos/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)
            if not enabled:
                item.add_marker(pytest.mark.skip(reason="chaos suite: run it with make chaos"))


class Cluster:
    """The scripts' commands, as calls."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env = {**os.environ, "EG_CLUSTER_DIR": str(state_dir)}

    def _run(self, script: Path, *args: str, timeout_s: float = 150.0) -> str:
        done = subprocess.run(  # noqa: S603 - our own scripts, fixed arguments
            ["bash", str(script), *args],  # noqa: S607 - bash from PATH, like make
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"{script.name} {' '.join(args)}: {done.stderr}{done.stdout}")
        return done.stdout.strip()

    def rabbit(self, *args: str) -> str:
        """``scripts/rabbit-cluster.sh ARGS``; its output."""
        return self._run(RABBIT, *args)

    def redis(self, *args: str) -> str:
        """``scripts/redis-ha.sh ARGS``; its output."""
        return self._run(REDIS, *args)

    async def arabbit(self, *args: str) -> str:
        """:meth:`rabbit` off the event loop."""
        return await asyncio.to_thread(self.rabbit, *args)

    async def aredis(self, *args: str) -> str:
        """:meth:`redis` off the event loop."""
        return await asyncio.to_thread(self.redis, *args)

    def clean(self) -> None:
        """Stop and delete everything the scripts started (never raises)."""
        for script in (RABBIT, REDIS):
            subprocess.run(  # noqa: S603 - our own scripts
                ["bash", str(script), "clean"],  # noqa: S607
                env=self.env,
                capture_output=True,
                timeout=120,
                check=False,
            )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Three RabbitMQ nodes and Redis with Sentinel, cleaned away at the end however it ends."""
    state = Path(os.environ.get("EG_CLUSTER_DIR", f"/tmp/eventguard-cluster-{os.getuid()}"))  # noqa: S108 - the scripts' own default
    running = Cluster(state)
    running.clean()  # leftovers of an interrupted run
    (state / "fleet.pids").unlink(missing_ok=True)
    try:
        started = time.monotonic()
        running.rabbit("start")
        rabbit_s = time.monotonic() - started
        started = time.monotonic()
        running.redis("start")
        RESULTS["setup"] = {
            "rabbit_cluster_start_s": round(rabbit_s, 1),
            "redis_ha_start_s": round(time.monotonic() - started, 1),
        }
        yield running
    finally:
        running.clean()


RESULTS: dict[str, Any] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the scenarios' figures and the run's wall time."""
    if not RESULTS.get("scenarios"):
        return
    RESULTS["wall_s"] = round(time.monotonic() - _STARTED, 1)
    RESULTS["passed"] = exitstatus == 0
    target = Path(os.environ.get("EVENTGUARD_CHAOS_RESULTS", ROOT / "bench/results/chaos.json"))
    target.write_text(json.dumps(RESULTS, indent=2, sort_keys=True) + "\n")
