"""The AI fallback story for ``eventguard demo``, on the local provider simulator.

The primary answers; then it fails and the fallback answers with ``fallback_used``; then the
same request again is a cache hit. No real provider is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

from common.testing import Harness
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Actor, Envelope
from workers.ai_fallback.simulator import ProviderSimulator, Step

__all__ = ["prepare", "scenario", "simulator"]

PRIMARY, FALLBACK = "demo-primary", "demo-fallback"
_simulators: list[ProviderSimulator] = []


async def prepare(stack: contextlib.AsyncExitStack) -> dict[str, Any]:
    """Start the simulator (20 ms answers) and point the chain at it."""
    sim = ProviderSimulator(latency_s=0.02)
    await sim.start()
    stack.push_async_callback(sim.close)
    _simulators[:] = [sim]
    common = {"endpoint": sim.url, "key_ref": "sim", "max_output": 1024, "timeout_s": 5.0}
    return {
        "ai_fallback": {
            "models": [
                {
                    "name": PRIMARY,
                    "provider": "openai",
                    "context_window": 16_000,
                    "input_usd_per_mtok": 0.5,
                    "output_usd_per_mtok": 1.5,
                    "priority": 10,
                    **common,
                },
                {
                    "name": FALLBACK,
                    "provider": "anthropic",
                    "context_window": 200_000,
                    "input_usd_per_mtok": 3.0,
                    "output_usd_per_mtok": 15.0,
                    "priority": 20,
                    **common,
                },
            ],
            # Generous, never reached: with an actor budget set, ai_fallback keeps each
            # requester's spend, which the console's AI models page lists.
            "actor_max_tokens": 100_000_000,
            # A throwaway key for the simulator, generated for this run.
            "provider_keys": {"sim": "demo-" + secrets.token_hex(8)},
        }
    }


def simulator() -> ProviderSimulator | None:
    """The running provider simulator (``make demo``'s steady load makes it fail and recover)."""
    return _simulators[0] if _simulators else None


async def _ask(env: Harness, text: str) -> Envelope[Any]:
    request = CompletionRequested(
        messages=[Message(role="user", content=text)], max_tokens=64, temperature=0
    )
    sent = await env.publish(
        "ai.completion.requested", request, actor=Actor(subject="demo-user", role="user")
    )

    async with asyncio.timeout(15):
        while True:
            for kind in ("ai.completion.succeeded", "ai.completion.failed"):
                for event in env.emitted(kind):
                    if event.data.request_id == sent.id:
                        return event
            await asyncio.sleep(0.005)


def _line(event: Envelope[Any]) -> str:
    data = event.data
    if event.type == "ai.completion.failed":
        return f"failed: {data.reason} ({data.detail[:80]})"
    trail = ", ".join(f"{a.model}={a.outcome} {a.latency_ms:.0f}ms" for a in data.attempts)
    return (
        f"answered by {data.model}: {data.content!r} | cached={data.cached} "
        f"fallback_used={data.fallback_used} tokens={data.input_tokens}+{data.output_tokens} "
        f"cost=${data.cost_usd:.6f} | attempts: {trail}"
    )


async def scenario(env: Harness, say: Callable[[str], None]) -> None:
    """Primary answers; primary fails and the fallback answers; a repeat hits the cache."""
    sim = _simulators[0]
    say(f"ai_fallback: using the LOCAL PROVIDER SIMULATOR at {sim.url} (no real LLM is called)")
    say(f"ai_fallback: chain {PRIMARY} (OpenAI API) -> {FALLBACK} (Anthropic API)")
    first = await _ask(env, "What is an event bus?")
    say(f"ai_fallback: 1) {_line(first)}")
    sim.set_default(PRIMARY, Step("error", status=503))
    say(f"ai_fallback: simulator now answers HTTP 503 for {PRIMARY}")
    second = await _ask(env, "Why use a circuit breaker?")
    say(f"ai_fallback: 2) {_line(second)}")
    third = await _ask(env, "Why use a circuit breaker?")
    say(f"ai_fallback: 3) same request again -> {_line(third)}")
    sim.set_default(PRIMARY, Step("ok"))
