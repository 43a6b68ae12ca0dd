"""The broker protocol both implementations (AMQP and in-memory) provide."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from common.bus.message import IncomingMessage, OutgoingMessage
from common.bus.topology import Topology

__all__ = ["Broker", "MessageHandler"]

MessageHandler = Callable[[IncomingMessage], Coroutine[Any, Any, None]]


class Broker(Protocol):
    """Publish with confirms, consume with manual settlement, declare topology."""

    @property
    def connected(self) -> bool:
        """True while the connection to the broker is open."""
        ...

    async def start(self) -> None:
        """Connect (with retry and backoff)."""
        ...

    async def close(self) -> None:
        """Cancel consumers and close connections."""
        ...

    async def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings; idempotent."""
        ...

    async def publish(self, message: OutgoingMessage) -> None:
        """Publish and wait for the broker's confirm; raise DeliveryError if not taken."""
        ...

    async def consume(self, queue: str, handler: MessageHandler, *, prefetch: int) -> str:
        """Start consuming ``queue``; returns the consumer tag. Survives reconnects."""
        ...

    async def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; deliveries in flight may still be settled."""
        ...

    def active_consumers(self, queue: str) -> int:
        """How many consumers of this process are registered with the broker for ``queue``."""
        ...

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue``."""
        ...

    async def request_reply(self, message: OutgoingMessage, *, timeout_s: float) -> IncomingMessage:
        """Publish ``message`` with a private reply address as ``reply_to``; return the first
        reply carrying its ``correlation_id`` (TimeoutError after ``timeout_s``)."""
        ...
