"""Shared breaker state on the real Redis: two breakers stand in for two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from common.metrics import Metrics
from common.reliability import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpen,
    ManualClock,
    SharedBreakerState,
    State,
)
from common.store import Store

CONFIG = BreakerConfig(window_size=20, minimum_calls=5, open_s=5.0, jitter=0.0)


class Boom(Exception):
    """A dependency failure."""


async def fail() -> None:
    raise Boom


async def succeed() -> str:
    return "ok"


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A unique key prefix, deleted afterwards."""
    value = f"it-shared-{uuid.uuid4().hex[:8]}:"
    yield value
    client = Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=value + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _replica(
    url: str, prefix: str, clock: ManualClock, metrics: Metrics | None = None
) -> SharedBreakerState:
    store = Store(Redis.from_url(url), prefix=prefix)
    breaker = CircuitBreaker("dep", CONFIG, clock=clock)
    return SharedBreakerState(breaker, store, metrics=metrics, window_s=30)


def _state(breaker: CircuitBreaker) -> State:
    """Read through a call so mypy does not narrow the state across awaits."""
    return breaker.state


async def _calls(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with contextlib.suppress(Boom, CircuitOpen):
            await breaker.call(fail)


async def test_replicas_trip_together_on_the_fleet_window(redis_url: str, prefix: str) -> None:
    """Neither replica alone has enough calls, but the fleet's window trips both."""
    clock = ManualClock()
    a, b = _replica(redis_url, prefix, clock), _replica(redis_url, prefix, clock)
    await _calls(a.breaker, 3)
    await _calls(b.breaker, 3)
    assert _state(a.breaker) is State.CLOSED
    assert _state(b.breaker) is State.CLOSED
    await a.sync_once()
    await b.sync_once()
    assert _state(b.breaker) is State.OPEN
    await asyncio.sleep(0.05)  # b's open period is published in the background
    await a.sync_once()
    assert _state(a.breaker) is State.OPEN
    await a.store.close()
    await b.store.close()


async def test_an_open_replica_opens_the_other(redis_url: str, prefix: str) -> None:
    """A replica that opens publishes it; the other follows at its next sync."""
    clock = ManualClock()
    a, b = _replica(redis_url, prefix, clock), _replica(redis_url, prefix, clock)
    await _calls(a.breaker, 5)
    assert _state(a.breaker) is State.OPEN
    await asyncio.sleep(0.05)
    await b.sync_once()
    assert _state(b.breaker) is State.OPEN
    assert b.breaker.remaining_open_s() > 0
    await a.store.close()
    await b.store.close()


async def test_half_open_probe_is_leased_fleet_wide(redis_url: str, prefix: str) -> None:
    """With one permit, only one of two half-open replicas sends a probe."""
    clock = ManualClock()
    a, b = _replica(redis_url, prefix, clock), _replica(redis_url, prefix, clock)
    for replica in (a, b):
        replica.breaker.trip()
    await asyncio.sleep(0.05)
    clock.advance(6)
    gate = asyncio.Event()
    probes = 0

    async def probe() -> str:
        nonlocal probes
        probes += 1
        await gate.wait()
        return "ok"

    first = asyncio.create_task(a.breaker.call(probe))
    await asyncio.sleep(0.05)
    with pytest.raises(CircuitOpen):
        await b.breaker.call(probe)
    gate.set()
    assert await first == "ok"
    assert probes == 1
    await a.store.close()
    await b.store.close()


async def test_redis_going_away_falls_back_to_local_state(redis_url: str, prefix: str) -> None:
    """When Redis disappears mid-test the breaker keeps deciding locally and says so."""
    parts = urlsplit(redis_url)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
    connections: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        connections.extend([writer, up_writer])
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    db = parts.path.lstrip("/") or "0"
    metrics = Metrics(CollectorRegistry())
    clock = ManualClock()
    store = Store(
        Redis.from_url(
            f"redis://127.0.0.1:{port}/{db}", socket_timeout=0.5, socket_connect_timeout=0.5
        ),
        prefix=prefix,
        timeout_s=0.5,
    )
    shared = SharedBreakerState(CircuitBreaker("dep", CONFIG, clock=clock), store, metrics=metrics)
    await shared.sync_once()
    assert await shared.breaker.call(succeed) == "ok"
    proxy.close()
    for writer in connections:
        writer.close()
    await proxy.wait_closed()
    await shared.sync_once()
    fallbacks = metrics.registry.get_sample_value(
        "eventguard_breaker_shared_fallback_total", {"dependency": "dep"}
    )
    assert fallbacks == 1.0
    await _calls(shared.breaker, 5)
    assert _state(shared.breaker) is State.OPEN  # local decisions go on without Redis
    clock.advance(6)
    assert await asyncio.wait_for(shared.breaker.call(succeed), 2) == "ok"  # lease falls back too
    await store.close()
