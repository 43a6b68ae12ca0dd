"""Shared pieces for the quarantine unit tests: a poison worker, a clock, settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from common.bus.router import Emit
from common.config import QuarantineSettings, Settings
from common.errors import Reject
from common.service import BaseService, WorkerContext
from common.testing import fast_runtime_settings
from schemas.envelope import Envelope
from schemas.marketplace import StrategyRevoked
from schemas.registry import payload_model
from workers.quarantine import QuarantineService

POISON_TYPE = "marketplace.strategy.revoked"


def poison_payload(user: str = "u1") -> StrategyRevoked:
    """A payload the poison worker will reject."""
    return StrategyRevoked(user_id=user, strategy="s1")


class Clock:
    """A settable clock for expiry."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Poison(BaseService):
    """Rejects everything it consumes as poison, counting calls."""

    name = "poison"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.calls: list[str] = []
        self.accept = False
        self.router.add(payload_model(POISON_TYPE), self.handle)

    async def handle(self, event: Envelope[Any]) -> Emit:
        self.calls.append(event.id)
        if self.accept:
            return []
        raise Reject("this can never work")


def settings(**quarantine: Any) -> Settings:
    values: dict[str, Any] = {"tick_s": 0.01, "release_lease_s": 0.05, **quarantine}
    return Settings(runtime=fast_runtime_settings(), quarantine=QuarantineSettings(**values))


def factories(clock: Clock, holder: dict[str, Any]) -> list[tuple[str, Any]]:
    def quarantine(ctx: WorkerContext) -> QuarantineService:
        service = QuarantineService(ctx, now=clock)
        holder["quarantine"] = service
        return service

    def poison(ctx: WorkerContext) -> Poison:
        service = Poison(ctx)
        holder["poison"] = service
        return service

    return [("quarantine", quarantine), ("poison", poison)]


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)
