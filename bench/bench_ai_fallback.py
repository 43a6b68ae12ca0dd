"""Benchmark the AI fallback worker against a direct HTTP call, LiteLLM's router and proxy.

The provider simulator answers in 20 ms on loopback. Figures (milliseconds, p50 unless named):

* overhead over RabbitMQ (the headline): one request/reply through the worker as deployed
  (quorum queues, publisher confirms, the Redis idempotency claim) minus a direct aiohttp call
  to the same simulator, measured side by side with the LiteLLM proxy over HTTP and LiteLLM's
  ``Router.acompletion`` in-process, each minus its own direct call (``bench/ai_rabbit.py``,
  ``bench/ai_litellm_proxy.py``).
* overhead in memory: the worker on the in-memory broker with the real pipeline and Redis;
  also the handler alone.
* failover: the primary hangs (its timeout 0.5 s) and the second model answers in 20 ms; time
  to answer before and after the primary's breaker opens (LiteLLM: before and after its
  cooldown), and the extra over the second model's own latency once open.

Writes ``bench/results/ai_fallback.json``. Run: ``.venv/bin/python -m bench.bench_ai_fallback``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from bench.ai_litellm_proxy import proxy_samples
from bench.ai_rabbit import REDIS_URL, floor_samples, process_samples, rabbit_samples
from common.config import Settings
from common.config.workers import AiFallbackSettings, AiModelSettings
from common.store import connect_redis
from common.testing import Harness, fast_runtime_settings, run_workers
from schemas.ai import CompletionRequested, Message
from schemas.envelope import Envelope, new_event
from workers.ai_fallback import AiFallbackService
from workers.ai_fallback import create as create_ai
from workers.ai_fallback.providers import ChatRequest, OpenAIClient
from workers.ai_fallback.simulator import ProviderSimulator, Step

RESULTS = Path(__file__).parent / "results" / "ai_fallback.json"
LATENCY_S = 0.02
PRIMARY_TIMEOUT_S = 0.5
N_OVERHEAD = 300
N_FAILOVER = 40
KEY = "bench-" + uuid.uuid4().hex[:8]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50_ms": round(_p(values, 0.5) * 1000, 3),
        "p90_ms": round(_p(values, 0.9) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
    }


def _settings(sim: ProviderSimulator, prefix: str, *, breaker: bool = True) -> Settings:
    def spec(name: str, priority: int, timeout: float) -> AiModelSettings:
        return AiModelSettings(
            name=name,
            provider="openai",
            endpoint=sim.url,
            key_ref="sim",
            context_window=16_000,
            max_output=256,
            priority=priority,
            timeout_s=timeout,
            max_concurrency=64,
        )

    section = AiFallbackSettings(
        models=(spec("primary", 1, PRIMARY_TIMEOUT_S), spec("second", 2, 5.0)),
        provider_keys={"sim": SecretStr(KEY)},
        breaker_minimum_calls=3,
        breaker_window=5,
        breaker_open_s=3600,
    )
    return Settings(
        runtime=fast_runtime_settings(handler_timeout_s=30),
        ai_fallback=section,
        redis_key_prefix=prefix,
    )


def _request(i: int) -> CompletionRequested:
    # temperature > 0: never cached, every request reaches the provider
    return CompletionRequested(
        messages=[Message(role="user", content=f"question number {i}")],
        max_tokens=32,
        temperature=0.5,
    )


async def _timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        samples.append(time.perf_counter() - started)
    return samples


async def _direct(sim: ProviderSimulator, model: str, n: int) -> list[float]:
    client = OpenAIClient()
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            chat = ChatRequest(model, _request(i).messages, None, 32, 0.5)
            await client.complete(session, sim.url, KEY, chat)

        await _timed(5, one)
        return await _timed(n, one)


class _Replies:
    """Resolves a future when the worker publishes the answer to a request."""

    def __init__(self, harness: Harness) -> None:
        self.waiting: dict[str, asyncio.Future[Envelope[Any]]] = {}
        publisher = harness.runtime.workers["ai_fallback"].publisher
        publisher.add_listener(self._seen)

    def _seen(self, event: Envelope[Any]) -> None:
        request_id = getattr(event.data, "request_id", None)
        future = self.waiting.pop(request_id, None) if request_id else None
        if future is not None and not future.done():
            future.set_result(event)

    async def ask(self, harness: Harness, request: CompletionRequested) -> Envelope[Any]:
        event = new_event("ai.completion.requested", request, source="bench")
        future: asyncio.Future[Envelope[Any]] = asyncio.get_running_loop().create_future()
        self.waiting[event.id] = future
        await harness.producer.publish(event)
        return await future


async def _redis() -> Any:
    client = connect_redis(REDIS_URL)
    try:
        await client.ping()
    except OSError:
        await client.aclose()
        return None
    return client


async def _cleanup(client: Any, prefix: str) -> None:
    if client is None:
        return
    async for key in client.scan_iter(match=prefix + "*", count=10_000):
        await client.delete(key)
    await client.aclose()


async def bench_eventguard(sim: ProviderSimulator, *, real_redis: bool = True) -> dict[str, Any]:
    """Overhead and failover figures for the worker (overhead only on fakeredis)."""
    prefix = f"bench-ai-{uuid.uuid4().hex[:6]}:"
    redis = await _redis() if real_redis else None
    out: dict[str, Any] = {"redis": "real" if redis is not None else "fakeredis"}
    try:
        async with run_workers(
            [("ai_fallback", create_ai)], settings=_settings(sim, prefix), redis=redis
        ) as harness:
            service = harness.runtime.workers["ai_fallback"].service
            assert isinstance(service, AiFallbackService)
            replies = _Replies(harness)

            async def via_bus(i: int) -> None:
                answer = await replies.ask(harness, _request(i))
                assert answer.type == "ai.completion.succeeded", answer

            async def handler_only(i: int) -> None:
                event = new_event("ai.completion.requested", _request(i), source="bench")
                await service.on_requested(event)

            await _timed(10, via_bus)
            direct = await _direct(sim, "primary", N_OVERHEAD)
            bus = await _timed(N_OVERHEAD, via_bus)
            handler = await _timed(N_OVERHEAD, handler_only)
            out["direct"] = _ms(direct)
            out["worker"] = _ms(bus)
            out["handler_only"] = _ms(handler)
            out["overhead_p50_ms"] = round((_p(bus, 0.5) - _p(direct, 0.5)) * 1000, 3)
            out["handler_overhead_p50_ms"] = round((_p(handler, 0.5) - _p(direct, 0.5)) * 1000, 3)
            if not real_redis:
                return out

            sim.set_default("primary", Step("hang"))
            before: list[float] = []
            states: list[str] = []
            for i in range(N_FAILOVER):
                started = time.perf_counter()
                answer = await replies.ask(harness, _request(10_000 + i))
                elapsed = time.perf_counter() - started
                outcome = answer.data.attempts[0].outcome
                states.append(outcome)
                if outcome == "skipped_breaker_open":
                    break
                before.append(elapsed)
            after = await _timed(N_FAILOVER, lambda i: replies.ask(harness, _request(20_000 + i)))
            second = await _direct(sim, "second", N_FAILOVER)
            out["failover_before_open"] = _ms(before)
            out["failover_after_open"] = _ms(after)
            out["second_model_direct"] = _ms(second)
            out["calls_until_breaker_open"] = len(before)
            out["failover_after_open_extra_ms"] = round(
                (_p(after, 0.5) - _p(second, 0.5)) * 1000, 3
            )
            sim.set_default("primary", Step("ok"))
    finally:
        await _cleanup(redis, prefix)
    return out


async def bench_litellm(sim: ProviderSimulator) -> dict[str, Any]:
    """The same two measurements through LiteLLM's Router (retries off, cooldown on)."""
    try:
        from litellm.router import Router  # noqa: PLC0415 - optional: only the comparison needs it
    except ImportError:
        return {"skipped": "litellm is not installed (pip install litellm)"}

    def deployment(group: str, name: str, timeout: float) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": sim.url,
                "api_key": KEY,
                "timeout": timeout,
                "max_retries": 0,
            },
        }

    router = Router(
        model_list=[
            deployment("primary", "primary", PRIMARY_TIMEOUT_S),
            deployment("second", "second", 5.0),
        ],
        fallbacks=[{"primary": ["second"]}],
        num_retries=0,
        allowed_fails=2,
        cooldown_time=3600,
    )

    async def one(i: int, group: str = "primary") -> None:
        await router.acompletion(
            model=group,
            messages=[{"role": "user", "content": f"question number {i}"}],
            max_tokens=32,
            temperature=0.5,
        )

    await _timed(10, one)
    direct = await _direct(sim, "primary", N_OVERHEAD)
    through = await _timed(N_OVERHEAD, one)
    out: dict[str, Any] = {
        "direct": _ms(direct),
        "router": _ms(through),
        "overhead_p50_ms": round((_p(through, 0.5) - _p(direct, 0.5)) * 1000, 3),
    }
    sim.set_default("primary", Step("hang"))
    samples = await _timed(N_FAILOVER, lambda i: one(30_000 + i))
    slow = [s for s in samples if s >= PRIMARY_TIMEOUT_S]
    fast = [s for s in samples if s < PRIMARY_TIMEOUT_S]
    second = await _direct(sim, "second", N_FAILOVER)
    out["failover_before_cooldown"] = _ms(slow) if slow else None
    out["failover_after_cooldown"] = _ms(fast) if fast else None
    out["calls_until_cooldown"] = len(slow)
    out["failover_after_cooldown_extra_ms"] = (
        round((_p(fast, 0.5) - _p(second, 0.5)) * 1000, 3) if fast else None
    )
    sim.set_default("primary", Step("ok"))
    return out


async def bench_rabbitmq(sim: ProviderSimulator) -> dict[str, Any]:
    """The worker over the real RabbitMQ and Redis, by request/reply, minus a direct call."""
    settings = _settings(sim, "unused:")
    through, cpu_ms = await process_samples(
        settings, _request, warmup=20, n=N_OVERHEAD, timed=_timed
    )
    direct = await _direct(sim, "primary", N_OVERHEAD)
    in_process = await rabbit_samples(settings, _request, warmup=20, n=N_OVERHEAD, timed=_timed)
    floor = await floor_samples(warmup=20, n=N_OVERHEAD, timed=_timed)
    overhead = _p(through, 0.5) - _p(direct, 0.5)
    return {
        "direct": _ms(direct),
        "worker_process": _ms(through),
        "worker_process_cpu_ms_per_request": round(cpu_ms, 3),
        "worker_in_bench_process": _ms(in_process),
        "broker_floor": _ms(floor),
        "overhead_p50_ms": round(overhead * 1000, 3),
        "overhead_in_bench_process_p50_ms": round(
            (_p(in_process, 0.5) - _p(direct, 0.5)) * 1000, 3
        ),
        "overhead_over_broker_floor_p50_ms": round((overhead - _p(floor, 0.5)) * 1000, 3),
    }


async def bench_litellm_proxy(sim: ProviderSimulator) -> dict[str, Any]:
    """The same request through the LiteLLM proxy over HTTP, minus a direct call."""

    def body(i: int) -> dict[str, Any]:
        return {
            "model": "primary",
            "messages": [{"role": "user", "content": f"question number {i}"}],
            "max_tokens": 32,
            "temperature": 0.5,
        }

    try:
        through = await proxy_samples(
            "primary", sim.url, KEY, body=body, warmup=20, n=N_OVERHEAD, timed=_timed
        )
    except (FileNotFoundError, RuntimeError, TimeoutError) as error:
        return {"skipped": f"the LiteLLM proxy could not run: {error}"}
    direct = await _direct(sim, "primary", N_OVERHEAD)
    return {
        "direct": _ms(direct),
        "proxy": _ms(through),
        "overhead_p50_ms": round((_p(through, 0.5) - _p(direct, 0.5)) * 1000, 3),
    }


async def main(requests: int) -> int:
    """Run both, print a side-by-side table, write the JSON."""
    global N_OVERHEAD  # noqa: PLW0603 - one knob for the whole run
    N_OVERHEAD = requests
    async with ProviderSimulator(latency_s=LATENCY_S).running() as sim:
        rabbitmq = await bench_rabbitmq(sim)
        sim.reset()
        proxy = await bench_litellm_proxy(sim)
        sim.reset()
        eventguard = await bench_eventguard(sim)
        sim.reset()
        in_memory = await bench_eventguard(sim, real_redis=False)
        sim.reset()
        litellm = await bench_litellm(sim)
    result = {
        "simulator_latency_ms": LATENCY_S * 1000,
        "requests": N_OVERHEAD,
        "shared_machine": "2 cores shared with other engineers' runs: compare within one run",
        "overhead_p50_ms_rabbitmq": rabbitmq["overhead_p50_ms"],
        "broker_floor_p50_ms_rabbitmq": rabbitmq["broker_floor"]["p50_ms"],
        "worker_cpu_ms_per_request_rabbitmq": rabbitmq["worker_process_cpu_ms_per_request"],
        "litellm_proxy_overhead_p50_ms": proxy.get("overhead_p50_ms"),
        "litellm_router_overhead_p50_ms": litellm.get("overhead_p50_ms"),
        "overhead_p50_ms": eventguard["overhead_p50_ms"],
        "handler_overhead_p50_ms": eventguard["handler_overhead_p50_ms"],
        "overhead_p50_ms_fakeredis": in_memory["overhead_p50_ms"],
        "failover_before_open_p50_ms": eventguard["failover_before_open"].get("p50_ms"),
        "failover_after_open_p50_ms": eventguard["failover_after_open"].get("p50_ms"),
        "failover_after_open_extra_ms": eventguard["failover_after_open_extra_ms"],
        "targets": {
            "overhead_p50_ms_rabbitmq": 3.0,
            "overhead_p50_ms": 2.0,
            "failover_after_open_extra_ms": 5.0,
        },
        "eventguard_rabbitmq": rabbitmq,
        "litellm_proxy": proxy,
        "eventguard": eventguard,
        "eventguard_fakeredis": in_memory,
        "litellm": litellm,
        "python": sys.version.split()[0],
    }
    print(f"{'figure':44} {'eventguard':>12} {'litellm':>12}")
    print(
        f"{'overhead over RabbitMQ vs proxy over HTTP, ms':44} "
        f"{rabbitmq['overhead_p50_ms']!s:>12} {proxy.get('overhead_p50_ms')!s:>12}"
    )
    rows = [
        ("overhead over direct call, p50 ms", "overhead_p50_ms", "overhead_p50_ms"),
        (
            "failover after breaker/cooldown, extra ms",
            "failover_after_open_extra_ms",
            "failover_after_cooldown_extra_ms",
        ),
    ]
    for label, ours, theirs in rows:
        print(f"{label:44} {eventguard.get(ours)!s:>12} {litellm.get(theirs)!s:>12}")
    print(
        f"{'failover before open, p50 ms':44} "
        f"{eventguard['failover_before_open'].get('p50_ms')!s:>12} "
        f"{(litellm.get('failover_before_cooldown') or {}).get('p50_ms')!s:>12}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    raise SystemExit(asyncio.run(main(parser.parse_args().requests)))
