"""Shared breaker state on the real Redis: two breakers stand in for two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from structlog.testing import capture_logs

from common.metrics import Metrics
from common.reliability.breaker import CircuitBreaker
from common.reliability.breaker_types import BreakerConfig, State
from common.reliability.clock import ManualClock
from common.reliability.errors import CircuitOpen
from common.reliability.guard import KIND_DEFAULTS, Guards
from common.reliability.shared import SharedBreakerState
from common.store import Store

pytestmark = pytest.mark.integration

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
    keys = [k async for k in client.scan_iter(match=value + "*", count=10_000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _replica(
    url: str, prefix: str, clock: ManualClock, metrics: Metrics | None = None
) -> SharedBreakerState[Store]:
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


class _Proxy:
    """A TCP proxy on loopback to the real Redis that can go away and come back on its port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.extend([writer, up_writer])
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()


def _upstream(redis_url: str) -> tuple[tuple[str, int], str]:
    parts = urlsplit(redis_url)
    return (parts.hostname or "127.0.0.1", parts.port or 6379), parts.path.lstrip("/") or "0"


async def test_one_replica_loses_redis_mid_test_and_rejoins(redis_url: str, prefix: str) -> None:
    """Replica B loses Redis: it decides locally, counts and logs the fallback, while A keeps
    the fleet view; when Redis is back, B recovers and follows A's open breaker."""
    upstream, db = _upstream(redis_url)
    proxy = _Proxy(upstream)
    await proxy.up()
    metrics = Metrics(CollectorRegistry())
    clock = ManualClock()
    a = _replica(redis_url, prefix, clock)
    b_store = Store(
        Redis.from_url(
            f"redis://127.0.0.1:{proxy.port}/{db}", socket_timeout=0.5, socket_connect_timeout=0.5
        ),
        prefix=prefix,
        timeout_s=0.5,
    )
    b = SharedBreakerState(CircuitBreaker("dep", CONFIG, clock=clock), b_store, metrics=metrics)
    await a.sync_once()
    await b.sync_once()
    await proxy.down()
    with capture_logs() as logs:
        async with asyncio.timeout(3):  # never blocks on the missing Redis
            await b.sync_once()
            await b.sync_once()
    assert [e["event"] for e in logs].count("breaker.shared_unavailable") == 1  # once an outage
    fallbacks = metrics.registry.get_sample_value(
        "eventguard_breaker_shared_fallback_total", {"dependency": "dep"}
    )
    assert fallbacks == 2.0
    await _calls(a.breaker, 5)  # A opens and publishes it; B cannot hear
    assert _state(a.breaker) is State.OPEN
    await asyncio.sleep(0.05)
    assert await b.breaker.call(succeed) == "ok"  # B still closed, on its own evidence
    await proxy.up()  # Redis is back on the same port
    with capture_logs() as logs:
        async with asyncio.timeout(3):
            await b.sync_once()
    assert "breaker.shared_recovered" in [e["event"] for e in logs]
    assert _state(b.breaker) is State.OPEN  # B follows the fleet again
    await proxy.down()
    await a.store.close()
    await b_store.close()


async def test_client_kill_is_absorbed_by_the_redis_guard(redis_url: str, prefix: str) -> None:
    """CLIENT KILL of a replica's connection is retried by the redis guard: no fallback."""
    metrics = Metrics(CollectorRegistry())
    client = Redis.from_url(redis_url, client_name=f"{prefix}victim")
    store = Store(client, prefix=prefix)
    shared = SharedBreakerState(
        CircuitBreaker("dep", CONFIG, clock=ManualClock()), store, metrics=metrics
    )
    await shared.sync_once()
    victim = await client.client_id()  # the pool's one connection, the one sync used
    admin = Redis.from_url(redis_url)
    killed = await admin.client_kill_filter(_id=str(victim))  # only ours: Redis is shared
    assert killed == 1
    await admin.aclose()
    await shared.sync_once()
    fallbacks = metrics.registry.get_sample_value(
        "eventguard_breaker_shared_fallback_total", {"dependency": "dep"}
    )
    assert fallbacks in (None, 0.0)
    await store.close()


async def test_closed_state_calls_make_no_redis_round_trip(redis_url: str, prefix: str) -> None:
    """In the closed state a call never touches Redis; counts go out in one background sync."""
    shared = _replica(redis_url, prefix, ManualClock())
    executed = 0
    real_execute = shared.store.execute

    async def counting(op: Any) -> Any:
        nonlocal executed
        executed += 1
        return await real_execute(op)

    shared.store.execute = counting  # type: ignore[method-assign]
    for _ in range(1_000):
        await shared.breaker.call(succeed)
    assert executed == 0
    await shared.sync_once()
    assert executed == 1
    counts = await shared.store.client.hgetall(shared._prefix + "b:" + str(int(time.time())))
    assert int(counts.get(b"c", b"0")) in (0, 1_000)  # this second's bucket, or the previous one
    await shared.store.client.aclose()


async def test_guards_share_a_breaker_across_two_registries(redis_url: str, prefix: str) -> None:
    """Two Guards registries (two replicas) with a shared dependency trip together through
    their background syncs, on the real call path."""
    cfg = replace(
        KIND_DEFAULTS["http"],
        max_attempts=1,
        breaker=CONFIG,
        shared=True,
    )
    stores = [Store(Redis.from_url(redis_url), prefix=prefix) for _ in range(2)]
    fleet = [Guards(store=s, overrides={"http:fleet": cfg}) for s in stores]
    for guards in fleet:
        shared = guards.guard("http:fleet").shared
        assert shared is not None
        shared.sync_interval_s = 0.02
    await asyncio.gather(*(g.start() for g in fleet))

    async def down() -> str:
        raise Boom

    for guards in fleet:  # 3 failures each: neither alone reaches minimum_calls=5
        for _ in range(3):
            with contextlib.suppress(Boom):
                await guards.guard("http:fleet").call(down)
    async with asyncio.timeout(3):
        while not all(g.breaker("http:fleet").state is State.OPEN for g in fleet):
            await asyncio.sleep(0.01)
    await asyncio.gather(*(g.stop() for g in fleet))
    for store in stores:
        await store.close()
