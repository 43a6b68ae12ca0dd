"""Helpers: models served by the simulator, a fleet running the worker, requests and answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import SecretStr

from common.config import Settings
from common.config.workers import AiFallbackSettings, AiModelSettings
from common.reliability.guard import Guards
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Actor, Envelope
from workers.ai_fallback import AiFallbackService
from workers.ai_fallback import create as create_ai
from workers.ai_fallback.simulator import ProviderSimulator


def model(
    sim: ProviderSimulator, name: str, *, provider: str = "openai", **kw: Any
) -> AiModelSettings:
    """A model served by ``sim``."""
    values: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "endpoint": sim.url,
        "key_ref": "sim",
        "context_window": 8_000,
        "max_output": 1_000,
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 2.0,
        "timeout_s": 5.0,
        **kw,
    }
    return AiModelSettings(**values)


def ai_settings(models: list[AiModelSettings], **kw: Any) -> Settings:
    """Settings with ``models`` and a throwaway key minted now."""
    section = AiFallbackSettings(
        models=tuple(models), provider_keys={"sim": SecretStr("test-" + "k" * 8)}, **kw
    )
    return Settings(runtime=fast_runtime_settings(), ai_fallback=section)


@contextlib.asynccontextmanager
async def fleet(
    settings: Settings, factory: Callable[..., Any] = create_ai, *, guards: Guards | None = None
) -> AsyncIterator[tuple[Harness, AiFallbackService]]:
    """The worker on the in-memory broker and fakeredis, and its service object."""
    async with run_workers([("ai_fallback", factory)], settings=settings, guards=guards) as harness:
        service = harness.runtime.workers["ai_fallback"].service
        assert isinstance(service, AiFallbackService)
        yield harness, service


def ask(text: str = "hello", **kw: Any) -> CompletionRequested:
    """A completion request for ``text``."""
    return CompletionRequested(messages=[Message(role="user", content=text)], **kw)


async def answer(
    harness: Harness, request: CompletionRequested, *, actor: Actor | None = None
) -> Envelope[Any]:
    """Publish ``request`` and wait for its succeeded or failed event."""
    sent = await harness.publish("ai.completion.requested", request, actor=actor)
    return await reply_to(harness, sent.id)


async def reply_to(harness: Harness, request_id: str, within: float = 10.0) -> Envelope[Any]:
    """The succeeded or failed event answering ``request_id``."""
    async with asyncio.timeout(within):
        while True:
            for kind in ("ai.completion.succeeded", "ai.completion.failed"):
                for event in harness.emitted(kind):
                    if event.data.request_id == request_id:
                        return event
            await asyncio.sleep(0.002)
