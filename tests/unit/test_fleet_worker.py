"""The fleet benchmark's noop workers start and bind what the real workers consume."""

from __future__ import annotations

import pytest

from bench.fleet_worker import noop_worker
from common.testing import run_workers
from workers.registry import consumed_types


@pytest.mark.parametrize("name", sorted(consumed_types()))
async def test_a_noop_worker_starts_with_every_type_its_worker_consumes(name: str) -> None:
    """Each type gets a handler (a noop, or BaseService's own): none is registered twice."""
    types = consumed_types()[name]
    async with run_workers([(name, noop_worker(name, types))]) as harness:
        running = harness.runtime.workers[name]
        assert set(types) <= set(running.service.router.routes)
