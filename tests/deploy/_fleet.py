"""A worker fleet running in-process (in-memory broker, fakeredis) behind its real ops server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from common.config import Settings
from common.config.workers import OpportunitySettings
from common.ops import EventStream, OpsServer, build_app
from common.security.http import AdminAuth
from common.security.keys import demo_settings
from common.testing import Harness, fast_runtime_settings, run_workers
from workers.registry import WORKERS

__all__ = ["serving_fleet"]


@contextlib.asynccontextmanager
async def serving_fleet(
    workers: Sequence[str] = tuple(WORKERS), *, port: int = 0
) -> AsyncIterator[tuple[Harness, int]]:
    """Run ``workers`` and their ops server on 127.0.0.1; yields the fleet and the bound port."""
    settings = Settings(
        runtime=fast_runtime_settings(),
        security=demo_settings(),
        # Public exchange APIs are out of reach in tests: scan the bundled market simulator.
        opportunity_discovery=OpportunitySettings(market_source="simulator"),
    )
    async with run_workers([(name, WORKERS[name]) for name in workers], settings=settings) as fleet:
        auth = AdminAuth.from_settings(settings, store=fleet.store, metrics=fleet.metrics)
        app = build_app(fleet.runtime, auth=auth, stream=EventStream())
        async with OpsServer(app, host="127.0.0.1", port=port).serving() as ops:
            yield fleet, ops.port
