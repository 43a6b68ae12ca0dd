"""The opportunity demo story runs on the in-memory fleet."""

from __future__ import annotations

import contextlib

from common.config import Settings
from common.config.workers import OpportunitySettings
from common.testing import fast_runtime_settings, run_workers
from workers.opportunity_discovery import create, demo


async def test_demo_story_runs() -> None:
    """A user buys strategies, scans, and is shown ranked opportunities and a partial note."""
    lines: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        overrides = await demo.prepare(stack)
        settings = Settings(
            runtime=fast_runtime_settings(handler_timeout_s=60),
            opportunity_discovery=OpportunitySettings(**overrides["opportunity_discovery"]),
        )
        async with run_workers([("opportunity_discovery", create)], settings=settings) as env:
            await demo.scenario(env, lines.append)
    text = "\n".join(lines)
    print(text)
    assert "scan partial" in text
    assert "  1. " in text
    assert "on gamma" in text
    assert "not owned" in text
