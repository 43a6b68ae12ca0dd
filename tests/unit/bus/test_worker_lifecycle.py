"""The worker lifecycle: heartbeats, pause and resume, draining on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from common.bus.router import Emit
from common.config import Settings
from common.service import BaseService, WorkerContext
from common.testing import fast_runtime_settings, run_workers
from schemas.envelope import Envelope
from schemas.quarantine import QuarantineRequested


class Slow(BaseService):
    """Holds each message until released."""

    name = "slow"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.finished = 0
        self.router.add(QuarantineRequested, self.handle)

    async def handle(self, event: Envelope[QuarantineRequested]) -> Emit:
        self.started.set()
        await self.release.wait()
        self.finished += 1
        return []


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


def _request() -> QuarantineRequested:
    return QuarantineRequested(kind="producer", entity_id="p", reason="r", requested_by="t")


async def test_heartbeat_is_published_per_worker() -> None:
    """Every worker publishes health.heartbeat with its name and consumer count (its work
    queue and its replica's own queue of the quarantine broadcasts)."""
    settings = Settings(runtime=fast_runtime_settings(heartbeat_interval_s=0.01))
    async with run_workers([("slow", Slow)], settings=settings) as fleet:
        beat = await fleet.wait_for("health.heartbeat")
        assert beat.data.worker == "slow"
        assert beat.data.consumers == 2
        assert beat.data.paused is False


async def test_pause_cancels_consumer_and_resume_restores_it() -> None:
    """A paused worker takes no messages and reports not ready; resume takes them again."""
    async with run_workers([("slow", Slow)]) as fleet:
        service = fleet.runtime.workers["slow"].service
        assert isinstance(service, Slow)
        service.release.set()
        await fleet.runtime.pause("slow", "test")
        await fleet.publish("quarantine.requested", _request())
        await fleet.settle()
        assert service.finished == 0
        assert await fleet.broker.queue_depth("eventguard.slow") == 1
        assert fleet.runtime.workers["slow"].paused
        await fleet.runtime.resume("slow")
        await fleet.settle()
        assert service.finished == 1
        gauge = fleet.metrics.registry.get_sample_value(
            "eventguard_consumer_paused", {"worker": "slow"}
        )
        assert gauge == 0.0


async def test_an_open_redis_breaker_pauses_the_consumer_until_it_closes() -> None:
    """Every message needs Redis: while its breaker refuses calls, messages wait in the queue
    (no attempt spent), and the consumer comes back when the breaker lets calls through."""
    async with run_workers([("slow", Slow)]) as fleet:
        service = fleet.runtime.workers["slow"].service
        assert isinstance(service, Slow)
        service.release.set()
        redis = fleet.runtime.store.guard.breaker
        redis.force_open()
        await _until(lambda: fleet.runtime.workers["slow"].paused)
        await fleet.publish("quarantine.requested", _request())
        await fleet.settle()
        assert service.finished == 0
        assert await fleet.broker.queue_depth("eventguard.slow") == 1
        assert (await fleet.runtime.ready())["consumers"] is False
        redis.reset()
        await _until(lambda: service.finished == 1)
        assert not fleet.runtime.workers["slow"].paused
        retried = [m for m in fleet.broker.published if ".retry." in m.routing_key]
        assert retried == []


async def test_stop_waits_for_in_flight_handlers() -> None:
    """On stop, consumers are cancelled first and an in-flight handler is allowed to finish."""
    async with run_workers([("slow", Slow)]) as fleet:
        service = fleet.runtime.workers["slow"].service
        assert isinstance(service, Slow)
        await fleet.publish("quarantine.requested", _request())
        await service.started.wait()
        asyncio.get_running_loop().call_later(0.05, service.release.set)
    assert service.finished == 1
    assert fleet.broker.active_consumers("eventguard.slow") == 0


async def test_stop_gives_up_after_the_drain_deadline() -> None:
    """A handler that outlives the drain deadline does not hold the process open."""
    settings = Settings(runtime=fast_runtime_settings(drain_timeout_s=0.05))
    async with run_workers([("slow", Slow)], settings=settings) as fleet:
        service = fleet.runtime.workers["slow"].service
        assert isinstance(service, Slow)
        await fleet.publish("quarantine.requested", _request())
        await service.started.wait()
    assert service.finished == 0


class Rated(Slow):
    """Reports one entity's error rate."""

    name = "rated"

    def entity_error_rates(self) -> dict[str, float]:
        return {"ai_model:m1": 0.75}


async def test_heartbeat_carries_breakers_and_entity_error_rates() -> None:
    """The heartbeat names each breaker's state and the worker's entity error rates."""
    settings = Settings(runtime=fast_runtime_settings(heartbeat_interval_s=0.01))
    async with run_workers([("rated", Rated)], settings=settings) as fleet:
        fleet.runtime.guards.guard("http:thing").breaker.force_open()
        beat = await fleet.wait_for("health.heartbeat", lambda e: "http:thing" in e.data.breakers)
        assert beat.data.breakers["http:thing"] == "forced_open"
        assert beat.data.entity_error_rates == {"ai_model:m1": 0.75}
