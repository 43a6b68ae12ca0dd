"""Auto-pipelining for Redis: commands issued in the same event-loop tick share one round trip.

Under a prefetch of dozens, the idempotency claims of concurrent deliveries arrive together;
sending each as its own request costs a pool checkout, a write and a read apiece. Here they
queue up and go out as one non-transactional pipeline on the next tick. Each command keeps
its own result or error, and commands run in the order issued, exactly as if sent one by one.

At most ``max_in_flight`` pipelines are out at once: commands issued while they are out wait
for the next one (never longer than a round trip), so under load batches grow with the rate
instead of each loop tick paying a pipeline's fixed cost for one or two commands, and an idle
worker still sends at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from common.store import Store

__all__ = ["Command", "RedisBatch"]

# Queues one command on a redis-py pipeline, e.g. ``lambda p: p.set(key, value, nx=True)``.
Command = Callable[[Any], object]
_Entry = tuple[Command, "asyncio.Future[Any]"]


class RedisBatch:
    """Sends the commands issued in one loop tick as one pipeline, through ``store``'s guard."""

    def __init__(self, store: Store, *, max_batch: int = 512, max_in_flight: int = 2) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[_Entry] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def execute(self, command: Command) -> Any:
        """Run one command, queued on the shared pipeline by ``command``; return its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending or len(self._tasks) >= self._max_in_flight:
            return  # a finishing pipeline flushes what waits
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(self, batch: list[_Entry]) -> None:
        async def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for command, _ in batch:
                command(pipe)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return replies

        try:
            replies = await self._store.execute(run)
        except BaseException as error:  # every caller must hear of the failure, then re-raise
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
