"""The RabbitMQ broker, on aiormq (the AMQP transport under aio-pika).

* Two named connections, publish and consume (``<name>.publish``, ``<name>.consume``), each
  supervised by a :class:`~common.bus.link.Link` that reconnects with capped exponential
  backoff plus jitter.
* Publishing: persistent, ``mandatory``, publisher confirms. Many publishes may be in flight
  on the one channel; each awaits its own confirm. A nack, a return (unroutable) or a lost
  channel raises :class:`~common.errors.DeliveryError` and counts in
  ``eventguard_publish_failures_total``.
* Consuming: one channel per consumer, ``basic.qos`` = its prefetch. After every reconnect the
  remembered topology is re-declared and every consumer re-registers; a consumer the server
  cancels (queue deleted) re-declares its queue and consumes again. The
  ``eventguard_active_consumers{queue}`` gauge counts consumers the server has confirmed.
  Handlers run in tasks of their own, so a dying channel never cancels a handler half-way;
  its ack then finds the channel dead, is dropped and counted in ``eventguard_stale_acks_total``
  (the broker redelivers, and the idempotency claim makes that harmless).
* Request/reply through RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to``).

The hot paths (publish, deliver, ack) use aiormq's channel directly rather than aio-pika's
``Message`` objects: the same wire protocol with one object less per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed, PublishError
from pamqp import commands as spec

from common.bus.broker import MessageHandler
from common.bus.link import CONNECTION_ERRORS, Link, backoff_delay
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import QueueSpec, Topology
from common.errors import ConfigError, DeliveryError
from common.logging import get_logger
from common.metrics import Metrics

__all__ = ["DIRECT_REPLY_TO", "AmqpBroker"]

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_PERSISTENT = 2
_log = get_logger("eventguard.amqp")


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


class AmqpBroker:
    """RabbitMQ behind the :class:`~common.bus.broker.Broker` protocol."""

    def __init__(
        self,
        url: str,
        *,
        metrics: Metrics,
        name: str,
        reconnect_max_delay_s: float = 30.0,
        reconnect_base_s: float = 0.2,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 30.0,
        start_timeout_s: float | None = 60.0,
        close_grace_s: float = 5.0,
    ) -> None:
        self.name = name
        self._m = metrics.runtime
        self._publish_timeout_s = publish_timeout_s
        self._start_timeout_s = start_timeout_s
        self._close_grace_s = close_grace_s
        self._reconnect_base_s = reconnect_base_s
        self._reconnect_max_delay_s = reconnect_max_delay_s
        link = partial(
            Link,
            url,
            on_change=self._on_link_change,
            on_reconnect=self._m.reconnects.inc,
            reconnect_base_s=reconnect_base_s,
            reconnect_max_delay_s=reconnect_max_delay_s,
            connect_timeout_s=connect_timeout_s,
        )
        self._publish_link = link(name=f"{name}.publish", on_open=self._noop)
        self._consume_link = link(name=f"{name}.consume", on_open=self._redeclare)
        self._topologies: list[Topology] = []
        self._queue_specs: dict[str, QueueSpec] = {}
        self._consumers: dict[str, _Consumer] = {}
        self._retired: set[_Consumer] = set()
        self._registered: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tags = itertools.count(1)
        self._token = uuid.uuid4().hex[:8]
        self._pub_channel: AbstractChannel | None = None
        self._pub_lock = asyncio.Lock()
        self._reply_channel: AbstractChannel | None = None
        self._reply_lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[IncomingMessage]] = {}
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while both the publish and the consume connection are open."""
        return self._publish_link.connected and self._consume_link.connected

    async def start(self) -> None:
        """Open both connections; retries with backoff up to ``start_timeout_s``."""
        self._closed = False
        self._publish_link.start()
        self._consume_link.start()
        await self._publish_link.wait(self._start_timeout_s)
        await self._consume_link.wait(self._start_timeout_s)

    async def close(self) -> None:
        """Cancel consumers, give handlers ``close_grace_s`` to settle, close both connections."""
        self._closed = True
        await asyncio.gather(*(self.cancel(tag) for tag in list(self._consumers)))
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._close_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeliveryError("broker closed before the reply came"))
        await self._publish_link.stop()
        await self._consume_link.stop()
        self._retired.clear()
        self._pub_channel = self._reply_channel = None

    def _on_link_change(self) -> None:
        self._m.broker_connected.set(1 if self.connected else 0)

    async def _noop(self, _conn: AbstractConnection) -> None:
        return

    # -- topology -----------------------------------------------------------------------------

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges (with alternates), quorum queues and bindings; remembered, so a
        reconnect re-declares them. Raises ConfigError when an existing entity differs."""
        conn = await self._publish_link.wait(self._publish_timeout_s)
        await self._declare_on(conn, topology)
        if topology not in self._topologies:
            self._topologies.append(topology)
        for spec_ in topology.queues:
            self._queue_specs[spec_.name] = spec_

    async def _redeclare(self, conn: AbstractConnection) -> None:
        for topology in self._topologies:
            await self._declare_on(conn, topology)

    async def _declare_on(self, conn: AbstractConnection, topology: Topology) -> None:
        channel = await conn.channel(publisher_confirms=False)
        try:
            for exchange in topology.exchanges:
                arguments: dict[str, Any] = (
                    {"alternate-exchange": exchange.alternate} if exchange.alternate else {}
                )
                await channel.exchange_declare(
                    exchange.name, exchange_type=exchange.type, durable=True, arguments=arguments
                )
            for queue in topology.queues:
                if not queue.exclusive:  # a replica queue is declared by its own consumer
                    await self._declare_queue(channel, queue)
        except ChannelPreconditionFailed as error:
            raise ConfigError(f"topology differs from what the broker has: {error}") from error
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await channel.close()

    @staticmethod
    async def _declare_queue(channel: AbstractChannel, queue: QueueSpec) -> None:
        await channel.queue_declare(
            queue.name,
            durable=not queue.exclusive,
            exclusive=queue.exclusive,
            auto_delete=queue.exclusive,
            arguments=dict(queue.arguments),
        )
        for exchange, key in queue.bindings:
            await channel.queue_bind(queue.name, exchange, routing_key=key)

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (0 when it does not exist)."""
        conn = await self._publish_link.wait(self._publish_timeout_s)
        channel = await conn.channel(publisher_confirms=False)
        try:
            ok = await channel.queue_declare(queue, passive=True)
        except ChannelNotFoundEntity:
            return 0
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await channel.close()
        return int(ok.message_count or 0) if ok is not None else 0

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish persistent and (by default) mandatory; wait for the confirm."""
        channel = self._pub_channel
        if channel is None or channel.is_closed:
            channel = await self._open_publish_channel()
        await self._publish_on(channel, message)

    async def _open_publish_channel(self) -> AbstractChannel:
        async with self._pub_lock:
            channel = self._pub_channel
            if channel is None or channel.is_closed:
                channel = await self._confirm_channel()
                self._pub_channel = channel
            return channel

    async def _confirm_channel(self) -> AbstractChannel:
        conn = await self._publish_link.wait(self._publish_timeout_s)
        try:
            return await conn.channel(publisher_confirms=True, on_return_raises=True)
        except CONNECTION_ERRORS as error:
            self._m.publish_failures.labels(self.name, "connection").inc()
            raise DeliveryError(f"no publish channel: {error!r}") from error

    async def _publish_on(self, channel: AbstractChannel, message: OutgoingMessage) -> None:
        properties = spec.Basic.Properties(
            content_type=message.content_type,
            delivery_mode=_PERSISTENT,
            headers=dict(message.headers) if message.headers else None,
            message_id=message.message_id,
            message_type=message.type,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            user_id=message.user_id,
            app_id=message.app_id,
            timestamp=message.timestamp,
        )
        try:
            confirm = await channel.basic_publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=properties,
                mandatory=message.mandatory,
                timeout=self._publish_timeout_s,
            )
        except PublishError as error:
            self._fail("returned")
            frame = error.frame
            text = getattr(frame, "reply_text", "returned")
            raise DeliveryError(
                f"returned ({text}): {message.exchange!r} {message.routing_key!r}"
            ) from error
        except TimeoutError as error:
            self._fail("timeout")
            raise DeliveryError(f"no confirm within {self._publish_timeout_s}s") from error
        except CONNECTION_ERRORS as error:  # includes aiormq's DeliveryError (a nack)
            self._fail("nack" if "Nack" in repr(error) else "connection")
            raise DeliveryError(f"not confirmed: {error!r}") from error
        if not isinstance(confirm, spec.Basic.Ack):
            self._fail("nack")
            raise DeliveryError(f"nacked: {message.exchange!r} {message.routing_key!r}")

    def _fail(self, reason: str) -> None:
        self._m.publish_failures.labels(self.name, reason).inc()

    # -- consuming ----------------------------------------------------------------------------

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> str:
        """Register a consumer that survives reconnects; returns once the server confirmed it
        (or after ``publish_timeout_s``, still retrying in the background)."""
        if self._closed:
            raise DeliveryError("broker is closed")
        tag = f"{self.name}.{self._token}.{next(self._tags)}"
        consumer = _Consumer(tag, queue, handler, prefetch)
        self._consumers[tag] = consumer
        registered = asyncio.get_running_loop().create_future()
        consumer.task = asyncio.get_running_loop().create_task(
            self._supervise(consumer, registered), name=f"consume:{tag}"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._publish_timeout_s):
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

    def active_consumers(self, queue: str) -> int:
        """Consumers of this process that the server has confirmed on ``queue``."""
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
            conn = await self._consume_link.wait()
            channel = await conn.channel(publisher_confirms=False)
            await channel.basic_qos(prefetch_count=consumer.prefetch)
            consumer.channel = channel
        spec_ = self._queue_specs.get(consumer.queue)
        if spec_ is not None:  # it may have been deleted: bring it back before consuming
            await self._declare_queue(channel, spec_)

        def on_cancel(frame: Any) -> None:
            if getattr(frame, "consumer_tag", None) == consumer.tag and not cancelled.done():
                cancelled.set_result(None)

        channel.on_consumer_cancel_callbacks.add(on_cancel)
        await channel.basic_consume(
            consumer.queue, partial(self._deliver, consumer, channel), consumer_tag=consumer.tag
        )
        return channel

    async def _pause(self, consumer: _Consumer, attempt: int) -> None:
        delay = backoff_delay(
            attempt, base_s=self._reconnect_base_s, cap_s=self._reconnect_max_delay_s
        )
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
        props = delivered.header.properties
        delivery = delivered.delivery
        tag = int(getattr(delivery, "delivery_tag", 0) or 0)
        consumer.unsettled += 1
        message = IncomingMessage(
            body=delivered.body,
            routing_key=delivered.routing_key or "",
            exchange=delivered.exchange or "",
            queue=consumer.queue,
            headers=props.headers or {},
            message_id=props.message_id,
            type=props.message_type,
            correlation_id=props.correlation_id,
            reply_to=props.reply_to,
            user_id=props.user_id,
            app_id=props.app_id,
            timestamp=props.timestamp,
            content_type=props.content_type,
            redelivered=bool(getattr(delivery, "redelivered", False)),
            _ack=partial(self._settle, consumer, channel, tag, None),
            _reject=partial(self._settle, consumer, channel, tag),
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

    # -- request/reply ------------------------------------------------------------------------

    async def request_reply(self, message: OutgoingMessage, *, timeout_s: float) -> IncomingMessage:
        """Publish ``message`` with ``reply_to`` = direct reply-to; wait for the reply with its
        correlation id (TimeoutError after ``timeout_s``)."""
        correlation_id = message.correlation_id or uuid.uuid4().hex
        if correlation_id in self._pending:
            raise ValueError(f"a request with correlation id {correlation_id} is in flight")
        future: asyncio.Future[IncomingMessage] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(timeout_s):
                channel = await self._open_reply_channel()
                await self._publish_on(
                    channel,
                    replace(message, reply_to=DIRECT_REPLY_TO, correlation_id=correlation_id),
                )
                return await future
        finally:
            self._pending.pop(correlation_id, None)

    async def _open_reply_channel(self) -> AbstractChannel:
        async with self._reply_lock:
            channel = self._reply_channel
            if channel is None or channel.is_closed:
                channel = await self._confirm_channel()
                await channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
                channel.closing.add_done_callback(partial(self._on_reply_closed, channel))
                self._reply_channel = channel
            return channel

    def _on_reply_closed(self, channel: AbstractChannel, _closing: asyncio.Future[Any]) -> None:
        if self._reply_channel is not channel:
            return
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeliveryError("reply channel closed before the reply"))

    async def _on_reply(self, delivered: DeliveredMessage) -> None:
        props = delivered.header.properties
        future = self._pending.get(props.correlation_id or "")
        if future is None or future.done():
            _log.info("reply.unmatched", correlation_id=props.correlation_id)
            return
        future.set_result(
            IncomingMessage(
                body=delivered.body,
                routing_key=delivered.routing_key or "",
                exchange=delivered.exchange or "",
                queue=DIRECT_REPLY_TO,
                headers=props.headers or {},
                message_id=props.message_id,
                type=props.message_type,
                correlation_id=props.correlation_id,
                reply_to=props.reply_to,
                user_id=props.user_id,
                app_id=props.app_id,
                timestamp=props.timestamp,
                content_type=props.content_type,
                redelivered=False,
                _ack=_settled,
                _reject=_rejected,
                settled=True,  # direct reply-to is no-ack
            )
        )


async def _settled() -> None:
    return


async def _rejected(_requeue: bool) -> None:
    return
