"""One multiplexed Redis connection for the hot path's batches.

:meth:`Store.execute_batch` (the idempotency claims and done marks, the quarantine's dead-letter
writes) sends every batch on one long-lived connection of its own: the batch is written at
once, and the replies are parsed by hiredis as they arrive and handed to the batches in the
order they were written (Redis answers in order), so several batches can be in flight on it.
No pool checkout, no read call or timeout per reply, no task per send: a batch costs one
write and one future. Timeouts, retries and the breaker stay where they are, in the guard
around each batch.

A batch cut short (the guard's timeout, a cancelled caller) drops the connection, as does a
``READONLY`` reply (the primary was demoted: behind Sentinels the next connection asks them for
the new one); the batches in flight on it fail with ``ConnectionError`` and their guards retry
them on a new connection. No late reply can be read as another batch's.

The link connects the way the client's pool would: host and port (or a Unix socket, or TLS
with the pool's own SSL context), or the primary the Sentinels name; then ``AUTH`` and
``SELECT`` as configured. :meth:`RespLink.for_client` returns None for a pool it does not
know (a credential provider, TLS behind Sentinels): :class:`common.store.Store` then sends
batches through a redis-py pipeline instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ReadOnlyError

__all__ = ["RespLink", "pack_commands"]

# One part of a command: bytes as they are, text as UTF-8, numbers in their decimal form.
Arg = bytes | str | int | float
Opener = Callable[[Callable[[], asyncio.Protocol]], Awaitable[tuple[Any, Any]]]


def pack_commands(commands: Sequence[Sequence[Arg]]) -> bytes:
    """``commands`` in the Redis protocol (RESP arrays of bulk strings), ready to write."""
    out: list[bytes] = []
    add = out.append
    for args in commands:
        add(b"*%d\r\n" % len(args))
        for arg in args:
            if type(arg) is bytes:
                add(b"$%d\r\n%b\r\n" % (len(arg), arg))
            elif type(arg) is str and (known := _WORDS.get(arg)) is not None:
                add(known)
            else:
                add(_bulk(arg))
    return b"".join(out)


# The encodings of short words seen before (command names, NX, PX, GET): a quarter of the
# packing time of a claim. Only exact text is kept (1, 1.0 and True are one dictionary key).
_WORDS: dict[str, bytes] = {}
_WORD_CHARS, _WORDS_KEPT = 16, 256


def _bulk(arg: Arg) -> bytes:
    data = arg if isinstance(arg, bytes) else str(arg).encode()
    encoded = b"$%d\r\n%b\r\n" % (len(data), data)
    if type(arg) is str and len(data) <= _WORD_CHARS and len(_WORDS) < _WORDS_KEPT:
        _WORDS[arg] = encoded
    return encoded


class _Batch:
    """A batch written on the link: how many replies it still waits for, and those it has."""

    __slots__ = ("future", "missing", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.missing = count
        self.replies: list[Any] = []


class _Protocol(asyncio.Protocol):
    """The connection: writes batches, matches the parsed replies to them in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse, replyError=BaseParser.parse_error
        )
        self._waiting: deque[_Batch] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection

    def send(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(RedisConnectionError("Redis link closed"))
            return future
        self._waiting.append(_Batch(future, count))
        self.transport.write(packed)
        return future

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        demoted = False
        while True:
            try:
                reply = reader.gets()
            except InvalidResponse as error:
                self._fail(RedisConnectionError(f"Redis protocol error: {error}"))
                return
            if reply is False:
                break
            if not self._waiting:  # a reply nobody asked for: the stream is out of step
                self._fail(RedisConnectionError("Redis sent an unexpected reply"))
                return
            batch = self._waiting[0]
            batch.replies.append(reply)
            demoted = demoted or isinstance(reply, ReadOnlyError)
            batch.missing -= 1
            if batch.missing == 0:
                self._waiting.popleft()
                if not batch.future.done():
                    batch.future.set_result(batch.replies)
        if demoted:  # the next batch must find the new primary
            self.abort(RedisConnectionError("Redis answered READONLY: the primary moved"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis link lost: {exc!r}" if exc else "Redis link lost"))

    def abort(self, error: Exception) -> None:
        """Drop the connection now; what waits on it fails with ``error``."""
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self.closed = True
        while self._waiting:
            batch = self._waiting.popleft()
            if not batch.future.done():
                batch.future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class RespLink:
    """Batches of commands over one connection of their own, opened on first use."""

    def __init__(
        self,
        open_connection: Opener,
        *,
        hello: Sequence[Sequence[Arg]] = (),
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._open = open_connection
        self._hello = list(hello)  # AUTH and SELECT, sent first on every connection
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    @classmethod
    def for_client(cls, client: Redis) -> RespLink | None:
        """A link to where ``client``'s pool connects, with its credentials and database; None
        for a pool this link does not know how to reach."""
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if kwargs.get("credential_provider") is not None:
            return None
        hello: list[list[Arg]] = []
        password, user = kwargs.get("password"), kwargs.get("username")
        if password:
            hello.append(["AUTH", user, password] if user else ["AUTH", password])
        if kwargs.get("db"):
            hello.append(["SELECT", kwargs["db"]])
        timeout = kwargs.get("socket_connect_timeout") or 2.0
        kind = pool.connection_class
        loop_of = asyncio.get_running_loop
        opener: Opener
        if isinstance(pool, SentinelConnectionPool):
            if kind is not SentinelManagedConnection:
                return None

            async def opener(factory: Callable[[], asyncio.Protocol]) -> tuple[Any, Any]:
                host, port = await pool.get_master_address()  # type: ignore[no-untyped-call]
                return await loop_of().create_connection(factory, host, port)

        elif kind is Connection:
            host, port = kwargs.get("host", "localhost"), int(kwargs.get("port", 6379))

            async def opener(factory: Callable[[], asyncio.Protocol]) -> tuple[Any, Any]:
                return await loop_of().create_connection(factory, host, port)

        elif kind is SSLConnection:
            ssl_kwargs = {k: v for k, v in kwargs.items() if k.startswith("ssl_")}
            context = SSLConnection(**ssl_kwargs).ssl_context.get()
            host, port = kwargs.get("host", "localhost"), int(kwargs.get("port", 6379))

            async def opener(factory: Callable[[], asyncio.Protocol]) -> tuple[Any, Any]:
                return await loop_of().create_connection(
                    factory, host, port, ssl=context, server_hostname=host
                )

        elif kind is UnixDomainSocketConnection:
            path = kwargs["path"]

            async def opener(factory: Callable[[], asyncio.Protocol]) -> tuple[Any, Any]:
                return await loop_of().create_unix_connection(factory, path)

        else:
            return None
        return cls(opener, hello=hello, connect_timeout_s=float(timeout))

    async def send(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Write ``commands`` at once; return their raw replies in order (an error reply as
        its exception, in its place). Raises ``ConnectionError`` when the connection fails."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        future = protocol.send(pack_commands(commands), len(commands))
        try:
            return await future
        except asyncio.CancelledError:  # cut short: its replies must not reach another batch
            protocol.abort(RedisConnectionError("a batch on the Redis link was cut short"))
            raise

    async def _connect(self) -> _Protocol:
        async with self._connecting:  # batches that find it closed together open one
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    _, opened = await self._open(_Protocol)
            except OSError as error:
                raise RedisConnectionError(f"Redis link could not connect: {error}") from error
            except TimeoutError:
                raise RedisConnectionError("Redis link: connect timed out") from None
            protocol = cast(_Protocol, opened)  # made by the factory passed in
            if self._hello:
                try:  # cut short (the guard's timeout) or refused: the socket is closed
                    replies = await protocol.send(pack_commands(self._hello), len(self._hello))
                except BaseException:
                    protocol.abort(RedisConnectionError("the link's AUTH/SELECT did not finish"))
                    raise
                refused = next((r for r in replies if isinstance(r, Exception)), None)
                if refused is not None:  # the server's words, never the credential
                    protocol.abort(RedisConnectionError("Redis refused the link"))
                    raise refused
            self._protocol = protocol
            return protocol

    def close(self) -> None:
        """Drop the connection (the next batch would open another)."""
        if self._protocol is not None:
            self._protocol.abort(RedisConnectionError("Redis link closed"))
            self._protocol = None
