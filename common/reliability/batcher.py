"""Dynamic batching: callers submit items one by one; a processor handles them in batches.

A batch is flushed when it reaches ``max_size`` or when its oldest item has waited
``max_wait_s``. A processor that raises fails every caller of that batch; one that returns the
wrong number of results fails every caller with :class:`BatchError` instead of leaving anyone
waiting. ``shutdown()`` flushes what is pending, waits for running batches (up to an optional
deadline, after which they are cancelled and their callers fail with :class:`BatchError`) and
then refuses new items.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from common.reliability.errors import BatchError

__all__ = ["DynamicBatcher"]

I = TypeVar("I")  # noqa: E741 - item
R = TypeVar("R")


class DynamicBatcher(Generic[I, R]):
    """Collects items into batches for ``processor``."""

    def __init__(
        self,
        processor: Callable[[list[I]], Awaitable[Sequence[R]]],
        *,
        max_size: int = 64,
        max_wait_s: float = 0.01,
    ) -> None:
        if max_size < 1 or max_wait_s < 0:
            raise ValueError("max_size >= 1 and max_wait_s >= 0")
        self._processor = processor
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._items: list[I] = []
        self._futures: list[asyncio.Future[R]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, item: I) -> R:
        """Add ``item`` to the current batch and wait for its result."""
        if self._closed:
            raise BatchError("batcher is shut down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await future

    def flush(self) -> None:
        """Send what is pending now, without waiting for size or time."""
        self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        task = asyncio.get_running_loop().create_task(self._run(items, futures))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[I], futures: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._processor(items)
        except BaseException as error:
            problem = (
                error
                if isinstance(error, Exception)
                else BatchError(f"batch of {len(items)} stopped before finishing: {error!r}")
            )
            for future in futures:
                if not future.done():
                    future.set_exception(problem)
            if not isinstance(error, Exception):
                raise
            return
        if len(results) != len(items):
            problem = BatchError(
                f"processor returned {len(results)} results for {len(items)} items"
            )
            for future in futures:
                if not future.done():
                    future.set_exception(problem)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def shutdown(self, timeout_s: float | None = None) -> None:
        """Flush what is pending, wait for running batches, refuse new items.

        Batches still running after ``timeout_s`` are cancelled; their callers get
        :class:`BatchError`. Safe to call twice."""
        self._closed = True
        self._flush()
        tasks = list(self._tasks)
        if not tasks:
            return
        _done, late = await asyncio.wait(tasks, timeout=timeout_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has begun."""
        return self._closed

    @property
    def pending(self) -> int:
        """Items waiting for the next flush."""
        return len(self._items)
