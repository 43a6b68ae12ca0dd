"""One supervised AMQP connection: connect, watch, reconnect with capped backoff and jitter.

With several node URLs (a RabbitMQ cluster), a lost connection or a failed connect moves on to
the next node at once; the backoff starts only when a whole round of nodes has failed.

The AMQP broker keeps two of these (publish and consume), so a consumer flood never delays a
publisher's confirms and a blocked publisher (memory alarm) never stalls consumers. Each
connection carries ``connection_name`` in its client properties, which is what the management
UI and ``rabbitmqctl list_connections client_properties`` show.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import aiormq
from aiormq.abc import AbstractConnection
from aiormq.exceptions import AMQPError

from common.errors import DeliveryError
from common.logging import get_logger

__all__ = ["CONNECTION_ERRORS", "Link", "backoff_delay", "node_of"]

_log = get_logger("eventguard.amqp")

# What a lost or refused connection raises in aiormq (ChannelInvalidStateError and "closed"
# are RuntimeErrors there).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    AMQPError,
    ConnectionError,
    OSError,
    RuntimeError,
    TimeoutError,
)


def backoff_delay(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random."""
    step = min(cap_s, base_s * 2.0 ** min(attempt, 30))
    return step / 2 + random.uniform(0, step / 2)  # noqa: S311 - jitter, not cryptography


def node_of(url: str) -> str:
    """``host:port`` of an AMQP URL: how logs name a node (never the credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5672}"


class Link:
    """Keeps one named connection open until :meth:`stop`, on the first node that answers."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        name: str,
        on_open: Callable[[AbstractConnection], Awaitable[None]],
        on_change: Callable[[], None],
        on_reconnect: Callable[[], None],
        reconnect_base_s: float,
        reconnect_max_delay_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.name = name
        self._urls = [urls] if isinstance(urls, str) else list(urls)
        if not self._urls:
            raise ValueError(f"{name}: no broker URL")
        self._index = 0
        self._on_open = on_open
        self._on_change = on_change
        self._on_reconnect = on_reconnect
        self._base_s = reconnect_base_s
        self._cap_s = reconnect_max_delay_s
        self._connect_timeout_s = connect_timeout_s
        self._connection: AbstractConnection | None = None
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0
        self.last_error: str | None = None  # the last failed attempt's error, for messages

    @property
    def node(self) -> str:
        """``host:port`` of the node this link uses (or tries next)."""
        return node_of(self._urls[self._index])

    @property
    def connected(self) -> bool:
        """True while the connection is open and set up."""
        conn = self._connection
        return self._ready.is_set() and conn is not None and not conn.is_closed

    def start(self) -> None:
        """Start the supervising task (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def wait(self, timeout_s: float | None = None) -> AbstractConnection:
        """The open connection; waits for one (DeliveryError after ``timeout_s``)."""
        while True:
            conn = self._connection
            if self._ready.is_set() and conn is not None and not conn.is_closed:
                return conn
            if self._stopping.is_set():
                raise DeliveryError(f"{self.name}: broker is closed")
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                why = f" (last error: {self.last_error})" if self.last_error else ""
                raise DeliveryError(
                    f"{self.name}: not connected within {timeout_s}s{why}"
                ) from None
            if self._stopping.is_set():
                raise DeliveryError(f"{self.name}: broker is closed")
            await asyncio.sleep(0)  # let a just-closed connection's state settle

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._stopping.set()
        self._ready.set()  # wake waiters so they see the stop
        if self._task is not None:
            await self._task

    def _next_node(self) -> bool:
        """Move to the next node; True when that starts a new round of the list."""
        self._index = (self._index + 1) % len(self._urls)
        return self._index == 0 or len(self._urls) == 1

    async def _run(self) -> None:
        ever_connected = False
        while not self._stopping.is_set():
            conn = await self._connect()
            if conn is None:
                if self._next_node():
                    await self._pause(self.attempts)
                    self.attempts += 1
                continue
            self.attempts = 0
            if ever_connected:
                self._on_reconnect()
            ever_connected = True
            self._connection = conn
            self._ready.set()
            self._on_change()
            _log.info("broker.connected", connection=self.name, node=self.node)
            await self._watch(conn)
            self._connection = None
            if self._stopping.is_set():
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await conn.close()
                self._on_change()
                return
            self._ready.clear()
            self._on_change()
            _log.warning("broker.connection_lost", connection=self.name, node=self.node)
            if len(self._urls) == 1:
                await self._pause(0)
            else:  # the node may be gone: the next one, after the shortest pause
                self._next_node()
                await self._pause(-1)

    async def _connect(self) -> AbstractConnection | None:
        conn = aiormq.Connection(
            self._urls[self._index], client_properties={"connection_name": self.name}
        )
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await conn.connect()
                await self._on_open(conn)
        except CONNECTION_ERRORS as error:
            self.last_error = repr(error)[:300]
            _log.warning(
                "broker.connect_failed",
                connection=self.name,
                node=self.node,
                attempt=self.attempts,
                error=repr(error)[:300],
            )
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close()
            return None
        return conn

    async def _watch(self, conn: AbstractConnection) -> None:
        closing = conn.closing
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({closing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not closing.done():
                closing.cancel()

    async def _pause(self, attempt: int) -> None:
        delay = backoff_delay(attempt, base_s=self._base_s, cap_s=self._cap_s)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
