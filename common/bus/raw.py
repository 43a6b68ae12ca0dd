"""Consuming a queue whose messages are not envelopes (the dead-letter queue).

The handler gets the delivery as it arrived, byte for byte. On success its output events are
published and confirmed, then the message is acked. On failure the message is given back to
the queue after a pause (``retry_pause_s``), so a record is never lost while its store is down.
"""

from __future__ import annotations

import asyncio
import time

from common import tracing
from common.bus.message import IncomingMessage
from common.bus.publisher import Publisher
from common.bus.router import RawHandler
from common.logging import get_logger
from common.metrics import Metrics

__all__ = ["RawPipeline"]

_log = get_logger("eventguard.raw")


class RawPipeline:
    """Settles each raw delivery: ack after the handler and its output, else requeue later."""

    def __init__(
        self,
        *,
        worker: str,
        handler: RawHandler,
        publisher: Publisher,
        metrics: Metrics,
        timeout_s: float,
        retry_pause_s: float = 1.0,
    ) -> None:
        self.worker = worker
        self.handler = handler
        self.publisher = publisher
        self.timeout_s = timeout_s
        self.retry_pause_s = retry_pause_s
        self._m = metrics.runtime
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def drained(self) -> None:
        """Wait until no message is being handled."""
        await self._idle.wait()

    async def __call__(self, message: IncomingMessage) -> None:
        """Handle one raw delivery; never raises."""
        if tracing.tracer is None:
            await self._deliver(message)
            return
        with tracing.process_span(message, self.worker):
            await self._deliver(message)

    async def _deliver(self, message: IncomingMessage) -> None:
        self._active += 1
        self._idle.clear()
        started = time.perf_counter()
        outcome = "ack"
        try:
            async with asyncio.timeout(self.timeout_s):
                output = list(await self.handler(message) or ())
                for event in output:
                    await self.publisher.publish(event)
            await message.ack()
        except Exception as error:  # noqa: BLE001 - requeued below, never dropped
            outcome = "retry"
            _log.warning("raw.failed", queue=message.queue, error=repr(error)[:500])
            await asyncio.sleep(self.retry_pause_s)
            try:
                await message.reject(requeue=True)
            except Exception:  # noqa: BLE001 - a dead channel redelivers on its own
                _log.warning("raw.settle_failed", queue=message.queue)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()
        self._m.messages.labels(self.worker, "raw", outcome).inc()
        self._m.processing.labels(self.worker, "raw").observe(time.perf_counter() - started)
