"""The README's "Running for real", followed literally on a fresh vhost (finding 2 of issue 19):
``setup local``, four workers each as its own user from its env file, and an answered request.

The block runs as written in bash; only what points it at the servers under test changes: the
vhost name (and so the env files' directory) and the options of ``setup local`` that name the
management API, the AMQP address, Redis and the first ops port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.onboarding import ROOT, code_block, fresh_vhost, read_env, ready

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.smoke]

README = (ROOT / "README.md").read_text()
WORKERS = ("health_monitor", "quarantine", "ai_fallback", "opportunity_discovery")


def test_the_section_sets_what_a_worker_needs() -> None:
    """The section names BROKER_USER, its users, producers and ports, and no guest URL."""
    section = README[README.index("## Running for real") : README.index("## Configuration")]
    for needed in (
        "EVENTGUARD_BROKER_USER",
        "eventguard setup local",
        "EVENTGUARD_OPS_PORT",
        "EVENTGUARD_SECURITY__PRODUCERS",
        "--ops-port 0",
    ):
        assert needed in section, needed
    assert "amqp://guest" not in section


async def test_running_for_real_as_written(tmp_path: Path, rabbit_url: str, redis_url: str) -> None:
    """The README block ends with four ready workers and the scan request answered."""
    block = code_block(README, after="## Running for real")
    async with fresh_vhost(tmp_path, rabbit_url, redis_url, label="readme") as setup:
        script = block.replace(
            "eventguard setup local --vhost eventguard",
            f"eventguard setup local --vhost {setup.vhost} {' '.join(setup.args)}",
        ).replace(".eventguard/eventguard/", f".eventguard/{setup.vhost}/")
        assert script != block
        setup.start(["bash", "-euc", script], env=setup.env_base(), log="readme.log")
        shell = setup.processes[-1]
        async with asyncio.timeout(120):
            while shell.poll() is None:
                await asyncio.sleep(0.2)
        output = (tmp_path / "readme.log").read_text()
        assert shell.returncode == 0, output[-3000:]
        for worker in WORKERS:
            env = read_env(setup.directory / f"{worker}.env")
            assert env["EVENTGUARD_BROKER_USER"] == worker
            assert await ready(int(env["EVENTGUARD_OPS_PORT"])), worker
        start = output.index('{\n  "specversion"')
        reply = json.loads(output[start : output.index("\n}\n", start) + 2])
        assert reply["type"] == "opportunity.scan.completed"
        assert reply["data"]["status"] == "refused"
        assert reply["data"]["user_id"] == "alice"
