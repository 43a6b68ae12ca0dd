"""Consumer supervision for the AMQP broker: register, watch, re-register after every loss.

* One channel per consumer, ``basic.qos`` = its prefetch, on the broker's consume connection
  (a :class:`~common.bus.link.Link`, which may move to another cluster node meanwhile).
* A consumer re-registers after its channel or connection is lost; one the server cancels
  (queue deleted, or its quorum queue's node gone) re-declares its queue and consumes again.
  The ``eventguard_active_consumers{queue}`` gauge counts consumers the server has confirmed.
* Handlers run in tasks of their own, so a dying channel never cancels a handler half-way;
  its ack then finds the channel dead, is dropped and counted in ``eventguard_stale_acks_total``
  (the broker redelivers, and the idempotency claim makes that harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiormq.abc import AbstractChannel, DeliveredMessage

from common.bus.broker import MessageHandler
from common.bus.link import CONNECTION_ERRORS, Link, backoff_delay
from common.bus.message import IncomingMessage
from common.bus.topology import QueueSpec
from common.errors import DeliveryError
from common.logging import get_logger
from common.metrics.shared import RuntimeMetrics

__all__ = ["Consumers", "declare_queue", "incoming"]

_log = get_logger("eventguard.amqp")


async def declare_queue(channel: AbstractChannel, queue: QueueSpec) -> None:
    """Declare ``queue`` (durable, or exclusive and auto-delete for a replica's own queue, with
    its arguments) and its bindings."""
    await channel.queue_declare(
        queue.name,
        durable=not queue.exclusive,
        exclusive=queue.exclusive,
        auto_delete=queue.exclusive,
        arguments=dict(queue.arguments),
    )
    for exchange, key in queue.bindings:
        await channel.queue_bind(queue.name, exchange, routing_key=key)


def incoming(
    delivered: DeliveredMessage,
    *,
    queue: str,
    redelivered: bool,
    ack: Callable[[], Awaitable[None]],
    reject: Callable[[bool], Awaitable[None]],
    settled: bool = False,
) -> IncomingMessage:
    """One AMQP delivery as an :class:`IncomingMessage` (every property the pipeline reads)."""
    props = delivered.header.properties
    return IncomingMessage(
        body=delivered.body,
        routing_key=delivered.routing_key or "",
        exchange=delivered.exchange or "",
        queue=queue,
        headers=props.headers or {},
        message_id=props.message_id,
        type=props.message_type,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        user_id=props.user_id,
        app_id=props.app_id,
        timestamp=props.timestamp,
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        redelivered=redelivered,
        _ack=ack,
        _reject=reject,
        settled=settled,
    )


@dataclass(eq=False)
class _Consumer:
    tag: str
    queue: str
    handler: MessageHandler
    prefetch: int
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    channel: AbstractChannel | None = None
    registered: bool = False
    unsettled: int = 0
    retired: bool = False
    task: asyncio.Task[None] | None = None
    redeclare: bool = False  # the broker cancelled it: its queue may be gone


class Consumers:
    """The consumers of one broker, each kept registered until cancelled."""

    def __init__(
        self,
        link: Link,
        *,
        name: str,
        metrics: RuntimeMetrics,
        queue_specs: Mapping[str, QueueSpec],
        reconnect_base_s: float,
        reconnect_max_delay_s: float,
        register_timeout_s: float,
    ) -> None:
        self._link = link
        self._name = name
        self._m = metrics
        self._queue_specs = queue_specs  # the broker's declared queues, shared
        self._base_s = reconnect_base_s
        self._cap_s = reconnect_max_delay_s
        self._register_timeout_s = register_timeout_s
        self._consumers: dict[str, _Consumer] = {}
        self._retired: set[_Consumer] = set()
        self._registered: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tags = itertools.count(1)
        self._token = uuid.uuid4().hex[:8]
        self.closed = False

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> str:
        """Register a consumer that survives reconnects; returns once the server confirmed it
        (or after ``register_timeout_s``, still retrying in the background)."""
        if self.closed:
            raise DeliveryError("broker is closed")
        tag = f"{self._name}.{self._token}.{next(self._tags)}"
        consumer = _Consumer(tag, queue, handler, prefetch)
        self._consumers[tag] = consumer
        registered = asyncio.get_running_loop().create_future()
        consumer.task = asyncio.get_running_loop().create_task(
            self._supervise(consumer, registered), name=f"consume:{tag}"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._register_timeout_s):
                await asyncio.shield(registered)
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; its unsettled deliveries can still be acked until the channel goes."""
        consumer = self._consumers.pop(consumer_tag, None)
        if consumer is None:
            return
        consumer.stopping.set()
        if consumer.task is not None:
            await consumer.task
        consumer.retired = True
        if consumer.unsettled == 0:
            await self._close_channel(consumer)
        else:
            self._retired.add(consumer)

    async def close(self, grace_s: float) -> None:
        """Cancel every consumer and give running handlers ``grace_s`` to settle."""
        self.closed = True
        await asyncio.gather(*(self.cancel(tag) for tag in list(self._consumers)))
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._retired.clear()

    def active(self, queue: str) -> int:
        """Consumers the server has confirmed on ``queue``."""
        return self._registered.get(queue, 0)

    def _set_registered(self, consumer: _Consumer, registered: bool) -> None:
        if consumer.registered == registered:
            return
        consumer.registered = registered
        count = self._registered.get(consumer.queue, 0) + (1 if registered else -1)
        self._registered[consumer.queue] = count
        self._m.consumers.labels(consumer.queue).set(count)

    async def _supervise(self, consumer: _Consumer, registered: asyncio.Future[None]) -> None:
        failures = 0
        stopping = asyncio.ensure_future(consumer.stopping.wait())
        try:
            while not consumer.stopping.is_set():
                cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                try:
                    channel = await self._register(consumer, cancelled)
                except CONNECTION_ERRORS as error:
                    failures += 1
                    _log.warning(
                        "consumer.register_failed",
                        queue=consumer.queue,
                        attempt=failures,
                        error=repr(error)[:300],
                    )
                    await self._pause(consumer, failures)
                    continue
                failures = 0
                self._set_registered(consumer, True)
                if not registered.done():
                    registered.set_result(None)
                closing = channel.closing
                await asyncio.wait(
                    {closing, cancelled, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                closing.cancel()
                self._set_registered(consumer, False)
                if consumer.stopping.is_set():
                    await self._basic_cancel(consumer, channel)
                elif cancelled.done():
                    _log.warning("consumer.cancelled_by_broker", queue=consumer.queue)
                    consumer.redeclare = True
                    await self._pause(consumer, 0)
                else:
                    _log.warning("consumer.channel_lost", queue=consumer.queue)
        finally:
            stopping.cancel()
            self._set_registered(consumer, False)

    async def _register(
        self, consumer: _Consumer, cancelled: asyncio.Future[None]
    ) -> AbstractChannel:
        channel = consumer.channel
        if channel is None or channel.is_closed:
            conn = await self._link.wait()
            channel = await conn.channel(publisher_confirms=False)
            await channel.basic_qos(prefetch_count=consumer.prefetch)
            consumer.channel = channel
        # A durable queue and its bindings were declared with the topology, and again on each
        # new connection before any consumer registers: declared again here only when the
        # broker cancelled the consumer (the queue may have been deleted). Each binding is a
        # cluster-wide transaction, which a consumer resuming after a failover need not wait
        # for. A replica's exclusive queue dies with its connection: always declared.
        spec_ = self._queue_specs.get(consumer.queue)
        if spec_ is not None and (spec_.exclusive or consumer.redeclare):
            await declare_queue(channel, spec_)
            consumer.redeclare = False

        def on_cancel(frame: Any) -> None:
            if getattr(frame, "consumer_tag", None) == consumer.tag and not cancelled.done():
                cancelled.set_result(None)

        channel.on_consumer_cancel_callbacks.add(on_cancel)
        await channel.basic_consume(
            consumer.queue, partial(self._deliver, consumer, channel), consumer_tag=consumer.tag
        )
        return channel

    async def _pause(self, consumer: _Consumer, attempt: int) -> None:
        delay = backoff_delay(attempt, base_s=self._base_s, cap_s=self._cap_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await consumer.stopping.wait()

    async def _basic_cancel(self, consumer: _Consumer, channel: AbstractChannel) -> None:
        if channel.is_closed:
            return
        with contextlib.suppress(*CONNECTION_ERRORS):
            await channel.basic_cancel(consumer.tag)

    async def _close_channel(self, consumer: _Consumer) -> None:
        self._retired.discard(consumer)
        channel, consumer.channel = consumer.channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await channel.close()

    async def _deliver(
        self, consumer: _Consumer, channel: AbstractChannel, delivered: DeliveredMessage
    ) -> None:
        delivery = delivered.delivery
        tag = int(getattr(delivery, "delivery_tag", 0) or 0)
        consumer.unsettled += 1
        message = incoming(
            delivered,
            queue=consumer.queue,
            redelivered=bool(getattr(delivery, "redelivered", False)),
            ack=partial(self._settle, consumer, channel, tag, None),
            reject=partial(self._settle, consumer, channel, tag),
        )
        task = asyncio.get_running_loop().create_task(self._handle(consumer, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, consumer: _Consumer, message: IncomingMessage) -> None:
        try:
            await consumer.handler(message)
        except Exception as error:  # noqa: BLE001 - a handler must not lose the message
            _log.exception("consumer.handler_failed", queue=consumer.queue, error=repr(error))
            await message.reject(requeue=True)

    async def _settle(
        self, consumer: _Consumer, channel: AbstractChannel, tag: int, requeue: bool | None
    ) -> None:
        """Ack (``requeue`` None) or reject; on a dead channel, drop and count it."""
        consumer.unsettled -= 1
        error: BaseException | None = None
        if channel.is_closed:
            error = DeliveryError("channel closed")
        else:
            try:
                if requeue is None:
                    await channel.basic_ack(tag, wait=False)
                else:
                    await channel.basic_reject(tag, requeue=requeue, wait=False)
            except CONNECTION_ERRORS as failed:
                error = failed
        if error is not None:
            self._m.stale_acks.labels(consumer.queue).inc()
            _log.info("consumer.stale_settle", queue=consumer.queue, error=repr(error)[:200])
        if consumer.retired and consumer.unsettled == 0:
            await self._close_channel(consumer)
