"""Single-flight for identical concurrent requests, plus a bounded TTL cache.

The reviewed deduplicator deadlocked on concurrent duplicates (it awaited while holding its
lock) and shared one cached result between calls with different arguments. Here the key is
built from every argument, nothing is awaited under a lock (there is no lock: the event loop
runs one task at a time and the bookkeeping is synchronous), and the cache is an LRU with a
size bound and a TTL. Failures are shared with the concurrent waiters but never cached. If the
caller running the shared call is cancelled, the waiters are not: one of them runs it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from common.reliability.clock import Clock, system_clock

__all__ = ["RequestDeduplicator", "request_key"]

P = ParamSpec("P")
T = TypeVar("T")


def _canonical(value: Any) -> Any:
    """A JSON-able form of ``value`` that keeps apart what compares different: types are
    tagged (``1`` vs ``1.0`` vs ``True`` vs ``"1"``, list vs tuple), mappings and sets sorted."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return [type(value).__name__, repr(value)]
    if isinstance(value, bytes | bytearray):
        return ["bytes", value.hex()]
    if isinstance(value, Mapping):
        items = sorted(
            ([_canonical(k), _canonical(v)] for k, v in value.items()),
            key=lambda kv: json.dumps(kv[0], sort_keys=True),
        )
        return ["map", items]
    if isinstance(value, list | tuple):
        return [type(value).__name__, [_canonical(v) for v in value]]
    if isinstance(value, set | frozenset):
        return ["set", sorted(json.dumps(_canonical(v), sort_keys=True) for v in value)]
    dump = getattr(value, "model_dump", None)  # pydantic models, without importing pydantic
    if callable(dump):
        return [type(value).__qualname__, _canonical(dump(mode="json"))]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [type(value).__qualname__, _canonical(dataclasses.asdict(value))]
    return [type(value).__qualname__, repr(value)]


def request_key(*args: Any, **kwargs: Any) -> str:
    """A stable key over every positional and keyword argument (canonical JSON, SHA-256)."""
    canonical = json.dumps(
        [_canonical(list(args)), _canonical(kwargs)], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class RequestDeduplicator(Generic[T]):
    """Runs one call per key at a time; remembers results for ``ttl_s`` (0 disables caching)."""

    def __init__(self, *, ttl_s: float = 0.0, max_entries: int = 1024, clock: Clock = system_clock):
        if ttl_s < 0 or max_entries < 1:
            raise ValueError("ttl_s >= 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self._cache: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.joined = 0

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` deduplicated on the function and every argument."""
        key = request_key(f"{fn.__module__}.{fn.__qualname__}", *args, **kwargs)
        return await self.run(key, lambda: fn(*args, **kwargs))

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """The result of ``fn()`` for ``key``: cached, joined, or computed now.

        ``key`` must cover everything that changes the answer (see :func:`request_key`)."""
        while True:
            cached = self._cache.get(key)
            if cached is not None:
                expires, value = cached
                if expires > self._clock.monotonic():
                    self._cache.move_to_end(key)
                    self.hits += 1
                    return value
                del self._cache[key]
            running = self._inflight.get(key)
            if running is None:
                return await self._lead(key, fn)
            self.joined += 1
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if running.cancelled() and task is not None and task.cancelling() == 0:
                    continue  # the leader was cancelled, not us: run it ourselves
                raise

    async def _lead(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        self.misses += 1
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await fn()
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)
                future.exception()  # mark retrieved: waiters may be gone
            raise
        else:
            future.set_result(value)
            if self.ttl_s > 0:
                self._store(key, value)
            return value
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    def _store(self, key: Hashable, value: T) -> None:
        self._cache[key] = (self._clock.monotonic() + self.ttl_s, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def invalidate(self, key: Hashable) -> None:
        """Forget a cached result."""
        self._cache.pop(key, None)

    def clear(self) -> None:
        """Forget every cached result (calls in flight still finish and are shared)."""
        self._cache.clear()

    @property
    def in_flight(self) -> int:
        """Distinct calls running now."""
        return len(self._inflight)

    def __len__(self) -> int:
        return len(self._cache)
