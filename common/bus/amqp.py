"""The RabbitMQ broker, on aiormq (the AMQP transport under aio-pika).

* Two named connections, publish and consume (``<name>.publish``, ``<name>.consume``), each
  supervised by a :class:`~common.bus.link.Link` that reconnects with capped exponential
  backoff plus jitter, and moves to the next node when given several (a cluster).
* Publishing: persistent, ``mandatory``, publisher confirms. Many publishes may be in flight
  on the one channel; each awaits its own confirm. A publish whose confirm is lost with its
  connection is sent again, same message id, once a connection is back (consumers' idempotency
  absorbs a copy); a nack replaces the channel (at most every ``renew_channel_s``) and sends
  again, up to ``nack_retries`` times: RabbitMQ 3.10/3.11 nacks every publish of a channel
  opened while its quorum queue's old leader was still recorded, until that node returns, and a
  fresh channel half a second later works. Both count in
  ``eventguard_publish_republished_total``. A nack that persists (a full queue with
  ``reject-publish``) raises. A return (unroutable), the overall
  ``publish_timeout_s`` passing, or a channel that cannot be opened raises
  :class:`~common.errors.DeliveryError` and counts in ``eventguard_publish_failures_total``.
* Consuming: see :mod:`common.bus.consumers`. After every reconnect the remembered topology
  is re-declared and every consumer re-registers.
* Request/reply through RabbitMQ's direct reply-to (``amq.rabbitmq.reply-to``).

The hot paths (publish, deliver, ack) use aiormq's channel directly rather than aio-pika's
``Message`` objects: the same wire protocol with one object less per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from aiormq.exceptions import (
    ChannelClosed,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    PublishError,
)
from pamqp import commands as spec

from common import tracing
from common.bus.broker import MessageHandler
from common.bus.consumers import Consumers, declare_queue, incoming
from common.bus.link import CONNECTION_ERRORS, Link
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import QueueSpec, Topology
from common.errors import ConfigError, DeliveryError
from common.logging import get_logger
from common.metrics import Metrics

__all__ = ["DIRECT_REPLY_TO", "AmqpBroker"]

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
_PERSISTENT = 2
_log = get_logger("eventguard.amqp")


class _Unconfirmed(DeliveryError):
    """The publish may or may not have been enqueued (its connection died), or was nacked."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"not confirmed ({reason}): {detail}")
        self.reason = reason


class AmqpBroker:
    """RabbitMQ behind the :class:`~common.bus.broker.Broker` protocol.

    ``url`` is one node's URL or a list of a cluster's nodes (tried in order, then round)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        metrics: Metrics,
        name: str,
        reconnect_max_delay_s: float = 30.0,
        reconnect_base_s: float = 0.2,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 30.0,
        start_timeout_s: float | None = 60.0,
        close_grace_s: float = 5.0,
        renew_channel_s: float = 0.5,
        nack_retries: int = 4,
    ) -> None:
        self.name = name
        self._m = metrics.runtime
        self._publish_timeout_s = publish_timeout_s
        self._start_timeout_s = start_timeout_s
        self._close_grace_s = close_grace_s
        self._renew_channel_s = renew_channel_s
        self._nack_retries = nack_retries
        link = partial(
            Link,
            url,
            on_change=self._on_link_change,
            on_reconnect=self._m.reconnects.inc,
            reconnect_base_s=reconnect_base_s,
            reconnect_max_delay_s=reconnect_max_delay_s,
            connect_timeout_s=connect_timeout_s,
        )
        self._publish_link = link(name=f"{name}.publish", on_open=_nothing)
        self._consume_link = link(name=f"{name}.consume", on_open=self._redeclare)
        self._topologies: list[Topology] = []
        self._queue_specs: dict[str, QueueSpec] = {}
        self._consumers = Consumers(
            self._consume_link,
            name=name,
            metrics=self._m,
            queue_specs=self._queue_specs,
            reconnect_base_s=reconnect_base_s,
            reconnect_max_delay_s=reconnect_max_delay_s,
            register_timeout_s=publish_timeout_s,
        )
        self._pub_channel: AbstractChannel | None = None
        self._pub_lock = asyncio.Lock()
        self._renewed_at = float("-inf")
        self._reply_channel: AbstractChannel | None = None
        self._reply_lock = asyncio.Lock()
        self._pending: dict[str, asyncio.Future[IncomingMessage]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while both the publish and the consume connection are open."""
        return self._publish_link.connected and self._consume_link.connected

    @property
    def nodes(self) -> dict[str, str]:
        """``host:port`` of the node each connection uses (publish, consume)."""
        return {"publish": self._publish_link.node, "consume": self._consume_link.node}

    async def start(self) -> None:
        """Open both connections; retries with backoff up to ``start_timeout_s``."""
        self._consumers.closed = False
        self._publish_link.start()
        self._consume_link.start()
        await self._publish_link.wait(self._start_timeout_s)
        await self._consume_link.wait(self._start_timeout_s)

    async def close(self) -> None:
        """Cancel consumers, give handlers ``close_grace_s`` to settle, close both connections."""
        await self._consumers.close(self._close_grace_s)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeliveryError("broker closed before the reply came"))
        await self._publish_link.stop()
        await self._consume_link.stop()
        self._pub_channel = self._reply_channel = None

    def _on_link_change(self) -> None:
        self._m.broker_connected.set(1 if self.connected else 0)

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
                    await declare_queue(channel, queue)
        except ChannelPreconditionFailed as error:
            raise ConfigError(f"topology differs from what the broker has: {error}") from error
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await channel.close()

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
        """Publish persistent and (by default) mandatory; wait for the confirm, sending the
        message again (same id) while its outcome is unknown (within ``publish_timeout_s``) or
        it was nacked (``nack_retries`` times at most)."""
        if tracing.tracer is None:  # on: a PRODUCER span, its context in the headers
            return await self._publish(message)
        return await tracing.publish(self._publish, message)

    async def _publish(self, message: OutgoingMessage) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._publish_timeout_s
        nacks = 0
        while True:
            channel = self._pub_channel
            if channel is None or channel.is_closed:
                channel = await self._open_publish_channel(max(0.0, deadline - loop.time()))
            try:
                await self._publish_on(channel, message, max(0.001, deadline - loop.time()))
            except _Unconfirmed as error:
                nacks += error.reason == "nack"
                if loop.time() >= deadline or nacks > self._nack_retries:
                    self._fail(error.reason)
                    raise
                if error.reason == "nack":
                    await self._renew_publish_channel(channel)
                self._m.republished.labels(self.name, error.reason).inc()
                _log.info(
                    "publish.republish",
                    reason=error.reason,
                    message_id=message.message_id,
                    node=self._publish_link.node,
                )
            else:
                return

    async def _open_publish_channel(self, timeout_s: float) -> AbstractChannel:
        async with self._pub_lock:
            channel = self._pub_channel
            if channel is None or channel.is_closed:
                channel = await self._confirm_channel(timeout_s)
                self._pub_channel = channel
            return channel

    async def _renew_publish_channel(self, nacking: AbstractChannel) -> None:
        """Replace a channel that nacked (once per ``renew_channel_s``, however many nacks)."""
        async with self._pub_lock:
            if self._pub_channel is not nacking:
                return  # already replaced
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(0.0, self._renewed_at + self._renew_channel_s - loop.time()))
            self._renewed_at = loop.time()
            self._pub_channel = None
            _log.warning("publish.channel_renewed", node=self._publish_link.node)
            with contextlib.suppress(*CONNECTION_ERRORS):
                await nacking.close()

    async def _confirm_channel(self, timeout_s: float | None = None) -> AbstractChannel:
        conn = await self._publish_link.wait(
            self._publish_timeout_s if timeout_s is None else timeout_s
        )
        try:
            return await conn.channel(publisher_confirms=True, on_return_raises=True)
        except CONNECTION_ERRORS as error:
            self._m.publish_failures.labels(self.name, "connection").inc()
            raise DeliveryError(f"no publish channel: {error!r}") from error

    async def _publish_on(
        self, channel: AbstractChannel, message: OutgoingMessage, timeout_s: float
    ) -> None:
        properties = spec.Basic.Properties(
            content_type=message.content_type,
            content_encoding=message.content_encoding,
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
                timeout=timeout_s,
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
            raise DeliveryError(f"no confirm within {timeout_s:.1f}s") from error
        except ChannelClosed as error:  # the server refused it (no exchange, access): definite
            self._fail("connection")
            raise DeliveryError(f"not confirmed: {error!r}") from error
        except CONNECTION_ERRORS as error:  # includes aiormq's DeliveryError (a nack)
            reason = "nack" if "Nack" in repr(error) else "connection"
            raise _Unconfirmed(reason, repr(error)[:300]) from error
        if not isinstance(confirm, spec.Basic.Ack):
            raise _Unconfirmed("nack", f"{message.exchange!r} {message.routing_key!r}")

    def _fail(self, reason: str) -> None:
        self._m.publish_failures.labels(self.name, reason).inc()

    # -- consuming ----------------------------------------------------------------------------

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> str:
        """Register a consumer that survives reconnects (see :mod:`common.bus.consumers`)."""
        return await self._consumers.consume(queue, handler, prefetch=prefetch)

    async def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; its unsettled deliveries can still be acked until the channel goes."""
        await self._consumers.cancel(consumer_tag)

    def active_consumers(self, queue: str) -> int:
        """Consumers of this process that the server has confirmed on ``queue``."""
        return self._consumers.active(queue)

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
                try:
                    await self._publish_on(
                        channel,
                        replace(message, reply_to=DIRECT_REPLY_TO, correlation_id=correlation_id),
                        self._publish_timeout_s,
                    )
                except _Unconfirmed as error:
                    self._fail(error.reason)
                    raise
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
            incoming(
                delivered,
                queue=DIRECT_REPLY_TO,
                redelivered=False,
                ack=_nothing,
                reject=_nothing,
                settled=True,  # direct reply-to is no-ack
            )
        )


async def _nothing(*_args: object) -> None:
    """Nothing to do: the publish link on open; settling a direct reply-to (no-ack) message."""
