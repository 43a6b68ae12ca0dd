"""Bounded concurrency with a bounded wait queue."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

from common.reliability.errors import BulkheadFull

__all__ = ["Bulkhead"]


class Bulkhead:
    """At most ``max_concurrent`` calls at once and ``max_waiting`` waiting; the rest are refused.

    Use as ``async with bulkhead:``. Waiters are served first come, first served.
    """

    def __init__(self, name: str, *, max_concurrent: int, max_waiting: int = 0) -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent >= 1 and max_waiting >= 0")
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
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
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # we were handed a slot just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise

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
