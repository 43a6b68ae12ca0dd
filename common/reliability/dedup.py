"""Single-flight for identical concurrent requests, plus a bounded TTL cache.

The reviewed deduplicator deadlocked on concurrent duplicates (it awaited while holding its
lock) and shared one cached result between calls with different arguments. Here the key is
built from every argument, nothing is awaited under a lock (there is no lock: the event loop
runs one task at a time and the bookkeeping is synchronous), and the cache is an LRU with a
size bound and a TTL. Failures are shared with the concurrent waiters but never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from common.reliability.clock import Clock, system_clock

__all__ = ["RequestDeduplicator", "request_key"]

T = TypeVar("T")


def request_key(*args: Any, **kwargs: Any) -> str:
    """A stable key over every positional and keyword argument (canonical JSON, SHA-256)."""
    canonical = json.dumps([args, sorted(kwargs.items())], sort_keys=True, default=repr)
    return hashlib.sha256(canonical.encode()).hexdigest()


class RequestDeduplicator(Generic[T]):
    """Runs one call per key at a time; remembers results for ``ttl_s`` (0 disables caching)."""

    def __init__(self, *, ttl_s: float = 0.0, max_entries: int = 1024, clock: Clock = system_clock):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self._cache: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.joined = 0

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """The result of ``fn()`` for ``key``: cached, joined, or computed now."""
        cached = self._cache.get(key)
        if cached is not None:
            expires, value = cached
            if expires > self._clock.monotonic():
                self._cache.move_to_end(key)
                self.hits += 1
                return value
            del self._cache[key]
        running = self._inflight.get(key)
        if running is not None:
            self.joined += 1
            return await asyncio.shield(running)
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
            del self._inflight[key]

    def _store(self, key: Hashable, value: T) -> None:
        self._cache[key] = (self._clock.monotonic() + self.ttl_s, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def invalidate(self, key: Hashable) -> None:
        """Forget a cached result."""
        self._cache.pop(key, None)

    def __len__(self) -> int:
        return len(self._cache)
