"""``eventguard demo --once``: the four stories on the in-memory fleet, then exit."""

from __future__ import annotations

import pytest

from common.config import Settings
from eventguard import demo


async def test_demo_once_runs_the_four_stories_and_exits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every worker's story runs, in order, and the demo returns 0 without serving a console."""
    assert await demo.run_demo(Settings(), once=True, port=0) == 0
    out = capsys.readouterr().out
    for name in demo.STORIES:
        assert f"--- {name} ---" in out
    assert "demo: every story ran" in out
    assert "console on" not in out
