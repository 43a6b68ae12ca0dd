"""The AI fallback worker on the real RabbitMQ and Redis, against the provider simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from common.bus.rpc import request
from common.config import Settings
from common.config.workers import AiFallbackSettings, AiModelSettings
from common.service import WorkerContext
from common.store import Store
from schemas.ai import CompletionRequested, Message
from schemas.envelope import new_event
from tests.integration.bus.conftest import Rig, open_rig
from workers.ai_fallback import AiFallbackService
from workers.ai_fallback.simulator import ProviderSimulator, Step


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest, rabbit_url: str, redis_url: str
) -> AsyncIterator[Rig]:
    """A per-test rig on the real servers; everything it declared is deleted afterwards."""
    async with open_rig(request, rabbit_url, redis_url, "ai") as opened:
        yield opened


@pytest.fixture
async def sim() -> AsyncIterator[ProviderSimulator]:
    """A fresh simulator on 127.0.0.1."""
    async with ProviderSimulator().running() as simulator:
        yield simulator


def _settings(sim: ProviderSimulator) -> Settings:
    def spec(name: str, priority: int) -> AiModelSettings:
        return AiModelSettings(
            name=name,
            provider="openai",
            endpoint=sim.url,
            key_ref="sim",
            context_window=8_000,
            max_output=500,
            priority=priority,
        )

    section = AiFallbackSettings(
        models=(spec("a", 1), spec("b", 2)),
        provider_keys={"sim": SecretStr("it-" + uuid.uuid4().hex[:8])},
        retry_after_cap_s=0.5,
    )
    return Settings(ai_fallback=section)


async def _service(rig: Rig, sim: ProviderSimulator) -> AiFallbackService:
    broker = await rig.broker("ai")
    store = Store(rig.redis, prefix=rig.prefix)
    ctx = WorkerContext(
        rig.worker, _settings(sim), store, broker, rig.publisher(broker), rig.metrics
    )
    service = AiFallbackService(ctx)
    await service.start()
    await rig.pipeline(broker, service.router)
    return service


def _ask(text: str) -> CompletionRequested:
    return CompletionRequested(messages=[Message(role="user", content=text)], max_tokens=50)


async def test_request_reply_fallback_then_cache_hit(rig: Rig, sim: ProviderSimulator) -> None:
    """Over RabbitMQ: the primary fails, b answers to reply_to; the repeat is a Redis cache hit."""
    sim.script("a", Step("error", status=502))
    service = await _service(rig, sim)
    requester = rig.publisher(await rig.broker("requester"))
    try:
        first = await request(
            requester, new_event("ai.completion.requested", _ask("hi"), source="it"), timeout_s=10
        )
        second = await request(
            requester, new_event("ai.completion.requested", _ask("hi"), source="it"), timeout_s=10
        )
        cached = [
            k
            async for k in rig.redis.scan_iter(
                match=rig.prefix + "ai_fallback:cache:*", count=10_000
            )
        ]
        ttl = await rig.redis.ttl(cached[0])
    finally:
        await service.stop()
    assert first.type == "ai.completion.succeeded"
    assert first.data.model == "b"
    assert first.data.fallback_used
    assert second.data.cached
    assert second.data.model == "b"
    assert len(cached) == 1
    assert 0 < ttl <= 3600


async def test_cooldown_survives_restart(rig: Rig, sim: ProviderSimulator) -> None:
    """A long Retry-After cools the model in Redis; a restarted worker still skips it."""
    sim.script("a", Step("rate_limit", retry_after=60))
    service = await _service(rig, sim)
    requester = rig.publisher(await rig.broker("requester"))
    try:
        await request(
            requester, new_event("ai.completion.requested", _ask("one"), source="it"), timeout_s=10
        )
    finally:
        await service.stop()
    store = Store(rig.redis, prefix=rig.prefix)
    ctx = WorkerContext(
        rig.worker, _settings(sim), store, service.ctx.broker, service.ctx.publisher, rig.metrics
    )
    restarted = AiFallbackService(ctx)
    await restarted.start()
    try:
        assert 55 < restarted.health.cooling("a") <= 60
    finally:
        await restarted.stop()
