"""One worker process for the fleet benchmark: the real runtime with noop handlers.

Everything ``eventguard run WORKER`` runs (the broker connection and the worker's own queue
and bindings, Redis behind its guard, the idempotency claim, producer authorisation,
heartbeats, the ops server with its metrics) except the worker's handlers, which return at
once. That isolates the runtime's cost per message from what each worker's handlers do.

    python -m bench.fleet_worker WORKER
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from common.bus.router import Emit
from common.config import Settings
from common.logging import configure_logging
from common.service import BaseService, Service, ServiceFactory, WorkerContext
from eventguard.cli import serve
from schemas.envelope import Envelope
from schemas.registry import payload_model
from workers.registry import consumed_types


async def _noop(_event: Envelope[Any]) -> Emit:
    return []


def noop_worker(name: str, types: list[str]) -> ServiceFactory:
    """A service named ``name`` consuming ``types`` (its real bindings) with noop handlers;
    the types every worker handles itself (``BaseService``'s, such as the quarantine entries
    that block a producer) keep their real handlers."""

    def create(ctx: WorkerContext) -> Service:
        service = BaseService(ctx)
        service.name = name
        for event_type in types:
            if event_type not in service.router.routes:
                service.router.add(payload_model(event_type), _noop)
        return service

    return create


def main(name: str) -> int:
    """Serve the noop version of worker ``name`` until SIGTERM."""
    settings = Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    factory = noop_worker(name, consumed_types()[name])
    return asyncio.run(serve(settings, [(name, factory)]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
