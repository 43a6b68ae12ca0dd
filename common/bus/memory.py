"""An in-memory broker with RabbitMQ's semantics, for unit tests and ``eventguard demo``.

Topic, fanout and default-exchange routing; manual ack and reject; prefetch; message TTL that
dead-letters (the retry delay tiers); dead-letter exchanges with ``x-death``; delivery limits;
``reject-publish`` overflow; mandatory publishes that fail when unroutable. It is not durable
and not shared between processes: nothing in it pretends to be production.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from common import tracing
from common.bus.broker import MessageHandler
from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import Topology, topic_matches
from common.errors import DeliveryError

__all__ = ["MemoryBroker"]


@dataclass
class _Stored:
    message: OutgoingMessage
    deliveries: int = 0


@dataclass
class _Consumer:
    tag: str
    handler: MessageHandler
    prefetch: int
    unacked: int = 0


@dataclass
class _Queue:
    name: str
    arguments: dict[str, Any]
    ready: deque[_Stored] = field(default_factory=deque)
    consumers: list[_Consumer] = field(default_factory=list)
    next_consumer: int = 0


class MemoryBroker:
    """One process, one event loop; same contract as the AMQP broker."""

    def __init__(self) -> None:
        self._exchanges: dict[str, str] = {"": "direct"}
        self._alternates: dict[str, str] = {}
        self._bindings: dict[str, list[tuple[str, str]]] = {}
        self._queues: dict[str, _Queue] = {}
        self._tags = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._connected = False
        self.published: list[OutgoingMessage] = []

    @property
    def connected(self) -> bool:
        """True between :meth:`start` and :meth:`close`."""
        return self._connected

    async def start(self) -> None:
        """Nothing to connect to."""
        self._connected = True

    async def close(self) -> None:
        """Cancel every consumer and timer; unsettled deliveries stay where they are."""
        self._connected = False
        for queue in self._queues.values():
            queue.consumers.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings (idempotent)."""
        for exchange in topology.exchanges:
            self._exchanges.setdefault(exchange.name, exchange.type)
            if exchange.alternate:
                self._alternates[exchange.name] = exchange.alternate
        for spec in topology.queues:
            self.declare_queue(spec.name, dict(spec.arguments))
            for source, key in spec.bindings:
                self.bind(spec.name, source, key)

    def declare_queue(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        """Declare one queue (idempotent)."""
        if name not in self._queues:
            self._queues[name] = _Queue(name, dict(arguments or {}))

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        """Bind ``queue`` to ``exchange`` with ``routing_key`` (idempotent)."""
        binding = (queue, routing_key)
        bindings = self._bindings.setdefault(exchange, [])
        if binding not in bindings:
            bindings.append(binding)

    async def publish(self, message: OutgoingMessage) -> None:
        """Route ``message``; raise DeliveryError when unroutable or a queue refuses it."""
        if tracing.tracer is None:  # on: a PRODUCER span, its context in the headers
            return await self._publish(message)
        return await tracing.publish(self._publish, message)

    async def _publish(self, message: OutgoingMessage) -> None:
        if not self._connected:
            raise DeliveryError("broker is not connected")
        targets = self._route(message.exchange, message.routing_key)
        if not targets and message.mandatory:
            raise DeliveryError(f"unroutable: {message.exchange!r} {message.routing_key!r}")
        if message.timestamp is None:
            message = replace(message, timestamp=datetime.now(UTC))
        for queue in targets:
            if not self._enqueue(queue, _Stored(message)):
                raise DeliveryError(f"queue {queue.name} is full (reject-publish)")
        self.published.append(message)

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> str:
        """Deliver ``queue``'s messages to ``handler``, at most ``prefetch`` unsettled."""
        if queue not in self._queues:
            raise DeliveryError(f"no queue {queue!r}")
        tag = f"memory-{next(self._tags)}"
        self._queues[queue].consumers.append(_Consumer(tag, handler, prefetch))
        self._dispatch(self._queues[queue])
        return tag

    async def cancel(self, consumer_tag: str) -> None:
        """Remove the consumer; its in-flight deliveries may still be settled."""
        for queue in self._queues.values():
            queue.consumers = [c for c in queue.consumers if c.tag != consumer_tag]

    def active_consumers(self, queue: str) -> int:
        """Consumers registered on ``queue``."""
        return len(self._queues[queue].consumers) if queue in self._queues else 0

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue``."""
        return len(self._queues[queue].ready) if queue in self._queues else 0

    async def request_reply(self, message: OutgoingMessage, *, timeout_s: float) -> IncomingMessage:
        """Publish ``message`` with a temporary reply queue as ``reply_to``; wait for the reply
        with its correlation id (TimeoutError after ``timeout_s``)."""
        correlation_id = message.correlation_id or f"request-{next(self._tags)}"
        reply_queue = f"amq.gen-reply-{next(self._tags)}"
        self.declare_queue(reply_queue)
        future: asyncio.Future[IncomingMessage] = asyncio.get_running_loop().create_future()

        async def on_reply(reply: IncomingMessage) -> None:
            await reply.ack()
            if reply.correlation_id == correlation_id and not future.done():
                future.set_result(reply)

        tag = await self.consume(reply_queue, on_reply, prefetch=1)
        try:
            async with asyncio.timeout(timeout_s):
                await self.publish(
                    replace(message, reply_to=reply_queue, correlation_id=correlation_id)
                )
                return await future
        finally:
            await self.cancel(tag)
            del self._queues[reply_queue]  # like an exclusive queue: gone with its requester

    def messages(self, queue: str) -> list[OutgoingMessage]:
        """The messages ready in ``queue`` (for tests and the demo)."""
        return [stored.message for stored in self._queues[queue].ready]

    async def idle(self) -> None:
        """Wait until no delivery is being handled (for tests; wrap in a timeout)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- routing ------------------------------------------------------------------------------

    def _route(self, exchange: str, routing_key: str) -> list[_Queue]:
        if exchange == "":
            queue = self._queues.get(routing_key)
            return [queue] if queue else []
        kind = self._exchanges.get(exchange)
        if kind is None:
            raise DeliveryError(f"no exchange {exchange!r}")
        names: list[str] = []
        for queue_name, key in self._bindings.get(exchange, []):
            matched = kind == "fanout" or (
                topic_matches(key, routing_key) if kind == "topic" else key == routing_key
            )
            if matched and queue_name not in names:
                names.append(queue_name)
        alternate = self._alternates.get(exchange)
        if not names and alternate is not None:
            return self._route(alternate, routing_key)
        return [self._queues[name] for name in names]

    def _enqueue(self, queue: _Queue, stored: _Stored, *, front: bool = False) -> bool:
        limit = queue.arguments.get("x-max-length")
        if limit is not None and len(queue.ready) >= int(limit):
            if queue.arguments.get("x-overflow") != "drop-head":
                return False
            queue.ready.popleft()
        if front:
            queue.ready.appendleft(stored)
        else:
            queue.ready.append(stored)
        ttl = queue.arguments.get("x-message-ttl")
        if ttl is not None:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def expire() -> None:
                if handle is not None:
                    self._timers.discard(handle)
                if stored in queue.ready:
                    queue.ready.remove(stored)
                    self._dead_letter(queue, stored, "expired")

            handle = loop.call_later(int(ttl) / 1000, expire)
            self._timers.add(handle)
        self._dispatch(queue)
        return True

    def _dead_letter(self, queue: _Queue, stored: _Stored, reason: str) -> None:
        dlx = queue.arguments.get("x-dead-letter-exchange")
        if dlx is None:
            return  # RabbitMQ drops it too; EventGuard's queues always name a DLX
        message = stored.message
        death = {
            "queue": queue.name,
            "reason": reason,
            "count": 1,
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
        headers = dict(message.headers)
        headers["x-death"] = [death, *list(headers.get("x-death", []))]
        routing_key = str(queue.arguments.get("x-dead-letter-routing-key", message.routing_key))
        dead = replace(message, exchange=str(dlx), routing_key=routing_key, headers=headers)
        for target in self._route(str(dlx), routing_key):
            self._enqueue(target, _Stored(dead))

    # -- delivery -----------------------------------------------------------------------------

    def _dispatch(self, queue: _Queue) -> None:
        while queue.ready and queue.consumers:
            consumer = self._next_free(queue)
            if consumer is None:
                return
            stored = queue.ready.popleft()
            stored.deliveries += 1
            consumer.unacked += 1
            incoming = self._incoming(queue, consumer, stored)
            task = asyncio.get_running_loop().create_task(consumer.handler(incoming))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_free(self, queue: _Queue) -> _Consumer | None:
        count = len(queue.consumers)
        for offset in range(count):
            consumer = queue.consumers[(queue.next_consumer + offset) % count]
            if consumer.unacked < consumer.prefetch:
                queue.next_consumer = (queue.next_consumer + offset + 1) % count
                return consumer
        return None

    def _incoming(self, queue: _Queue, consumer: _Consumer, stored: _Stored) -> IncomingMessage:
        message = stored.message

        async def ack() -> None:
            consumer.unacked -= 1
            self._dispatch(queue)

        async def reject(requeue: bool) -> None:
            consumer.unacked -= 1
            limit = queue.arguments.get("x-delivery-limit")
            if requeue and (limit is None or stored.deliveries <= int(limit)):
                self._enqueue(queue, stored, front=True)
            else:
                self._dead_letter(queue, stored, "delivery_limit" if requeue else "rejected")
            self._dispatch(queue)

        headers = dict(message.headers)
        if queue.arguments.get("x-queue-type") == "quorum" and stored.deliveries > 1:
            headers["x-delivery-count"] = stored.deliveries - 1
        return IncomingMessage(
            body=message.body,
            routing_key=message.routing_key,
            exchange=message.exchange,
            queue=queue.name,
            headers=headers,
            message_id=message.message_id,
            type=message.type,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            user_id=message.user_id,
            app_id=message.app_id,
            timestamp=message.timestamp,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            redelivered=stored.deliveries > 1,
            _ack=ack,
            _reject=reject,
        )
