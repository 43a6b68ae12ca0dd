"""The quarantine demo story runs on the in-memory fleet."""

from __future__ import annotations

import contextlib

from common.config import Settings
from common.config.workers import QuarantineSettings
from common.security.admission import Admission
from common.security.keys import demo_settings
from common.testing import fast_runtime_settings, run_workers
from workers.quarantine import create, demo


async def test_demo_story_runs() -> None:
    """Poison is recorded, listed, released once, refused twice, discarded; TTL expires."""
    lines: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        overrides = await demo.prepare(stack)
        settings = Settings(
            runtime=fast_runtime_settings(),
            quarantine=QuarantineSettings(**overrides["quarantine"]),
            security=demo_settings(),  # as in the demo: the fleet admission decides
        )
        admission = Admission.from_settings(settings)
        async with run_workers(
            [("quarantine", create)], settings=settings, authorize=admission
        ) as env:
            await demo.scenario(env, lines.append)
    text = "\n".join(lines)
    assert "re-published once with release id" in text
    assert "changes nothing: already_released" in text
    assert "released by expiry" in text
