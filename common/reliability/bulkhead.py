"""Bounded concurrency with a bounded wait queue (and an optional bound on the wait)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from common.reliability.errors import BulkheadFull

__all__ = ["Bulkhead"]

P = ParamSpec("P")
T = TypeVar("T")


class Bulkhead:
    """At most ``max_concurrent`` calls at once and ``max_waiting`` waiting; the rest are refused.

    Use as ``async with bulkhead:`` or ``await bulkhead.call(fn, *args)``. Waiters are served
    first come, first served; with ``max_wait_s`` a waiter that gets no slot in time is refused
    too. Refusals raise :class:`BulkheadFull` and are counted in ``rejected``. No lock: the
    bookkeeping is synchronous and a slot passes straight from a leaving call to the next waiter.
    """

    def __init__(
        self,
        name: str,
        *,
        max_concurrent: int,
        max_waiting: int = 0,
        max_wait_s: float | None = None,
    ) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent >= 1 and max_waiting >= 0")
        if max_wait_s is not None and max_wait_s <= 0:
            raise ValueError("max_wait_s must be positive (or None to wait as long as it takes)")
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self.active = 0
        self.rejected = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self.active < self.max_concurrent and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_waiting:
            self.rejected += 1
            raise BulkheadFull(self.name)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait_s):
                await waiter
        except (asyncio.CancelledError, TimeoutError) as error:
            if waiter.done() and not waiter.cancelled():
                self._release()  # we were handed a slot just as we were cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            if isinstance(error, TimeoutError):
                self.rejected += 1
                raise BulkheadFull(self.name) from error
            raise

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` inside the bulkhead."""
        async with self:
            return await fn(*args, **kwargs)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next waiter
                return
        self.active -= 1

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return len(self._waiters)
