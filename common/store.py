"""The Redis client every worker uses for its state.

Every command goes through :meth:`Store.execute`, which runs it behind the ``redis`` guard
(retry with a budget, circuit breaker, bulkhead, timeout). The runtime injects the guard from
its registry (so its breaker is the one the metrics, heartbeats and ``/readyz`` see); a Store
built without one gets a private ``redis`` guard with the kind's defaults, never a bare call.
Keys are namespaced with the configured prefix so tests and tenants never collide. Responses
are bytes (``decode_responses=False``) so stored message bodies stay byte for byte what arrived.

Redis is one URL, or a primary found through Sentinel (``EVENTGUARD_REDIS_SENTINELS``): during a
failover the client raises ``ConnectionError``, ``MasterNotFoundError`` or ``READONLY``, which
the guard retries like any other transient failure. :meth:`Store.execute_durable` sends a write
with ``WAIT`` behind it (``EVENTGUARD_REDIS_WAIT_REPLICAS``), for the writes an ack depends on.

:meth:`Store.execute_batch` sends many commands in one round trip for the hot paths (the
idempotency claims, the quarantine's dead-letter writes): hand-encoded RESP written at once on one
pooled connection and the replies read back raw, without redis-py's per-command pipeline
machinery (argument parsing, a read timeout per reply, response callbacks), which cost about
50 us a command here. Clients other than a plain ``redis.asyncio.Redis`` (fakeredis in the demo
and unit tests) take a redis-py pipeline with the callbacks off instead: the same raw replies.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from common.config import Settings
from common.errors import ConfigError, NotReplicated
from common.reliability.guard import Guard, Guards

__all__ = ["Arg", "Store", "connect_redis", "connect_sentinel", "pack_commands"]

T = TypeVar("T")
# One part of a command as :meth:`Store.execute_batch` sends it: bytes as they are, text as
# UTF-8, numbers in their decimal form (as redis-py encodes them).
Arg = bytes | str | int | float


def pack_commands(commands: Sequence[Sequence[Arg]]) -> bytes:
    """``commands`` in the Redis protocol (RESP arrays of bulk strings), ready to write."""
    out: list[bytes] = []
    for args in commands:
        out.append(b"*%d\r\n" % len(args))
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


async def _send_packed(client: Redis, commands: Sequence[Sequence[Arg]]) -> list[Any]:
    """Write ``commands`` at once on one pooled connection and read their raw replies; an error
    reply is that command's result. A read cut short (the guard's timeout, a lost connection)
    drops the connection, so no later caller reads these replies."""
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped upstream
    try:
        await connection.send_packed_command(pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:  # math.inf: no timeout per reply; the guard bounds the whole batch
                replies.append(await connection.read_response(timeout=math.inf))
            except ResponseError as error:
                replies.append(error)
        return replies
    finally:
        await pool.release(connection)


async def _send_pipelined(client: Redis, commands: Sequence[Sequence[Arg]]) -> list[Any]:
    """The same through a redis-py pipeline with its response callbacks off (raw replies)."""
    pipe = client.pipeline(transaction=False)
    pipe.response_callbacks = {}
    for args in commands:
        pipe.execute_command(*args)
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    return replies



def connect_redis(url: str) -> Redis:
    """A client for ``url`` with its own retries off (retries live in one layer: the guard)."""
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry_on_timeout=False,
        health_check_interval=15,
    )


def _address(entry: str) -> tuple[str, int]:
    host, _, port = entry.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"EVENTGUARD_REDIS_SENTINELS: {entry!r} is not host:port")
    return host, int(port)


def connect_sentinel(settings: Settings) -> Redis:
    """A client of the primary that ``settings``' Sentinels name (found again after a
    failover); its own retries off, like :func:`connect_redis`."""
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        [_address(entry) for entry in settings.redis_sentinels],
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        redis_class=Redis,
        db=settings.redis_db,
        password=password,
        decode_responses=False,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )
    return client


class Store:
    """Namespaced, guarded access to Redis."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "eg:",
        guard: Guard | None = None,
        timeout_s: float | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.guard: Guard = guard if guard is not None else Guards().guard("redis")
        self._timeout_s = timeout_s  # per-attempt timeout; None: the guard's own
        self.wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._send = _send_packed if type(client) is Redis else _send_pipelined

    @classmethod
    def from_settings(
        cls, settings: Settings, *, guard: Guard | None = None, needed_for: str = ""
    ) -> Store:
        """A store on ``settings``' Redis URL (or Sentinels) and key prefix (``ConfigError``
        without either; ``needed_for`` says what wanted it)."""
        if settings.redis_sentinels:
            client = connect_sentinel(settings)
        elif settings.redis_url is not None:
            client = connect_redis(settings.redis_url.get_secret_value())
        else:
            why = f" ({needed_for})" if needed_for else ""
            raise ConfigError(f"EVENTGUARD_REDIS_URL is missing{why}")
        return cls(
            client,
            prefix=settings.redis_key_prefix,
            guard=guard,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )

    def key(self, *parts: str) -> str:
        """The namespaced key for ``parts`` (joined with ``:``)."""
        return self.prefix + ":".join(parts)

    async def execute(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run one Redis operation (a command or a pipeline) under the redis guard."""
        client = self.client
        return await self.guard.call(lambda: op(client), timeout_s=self._timeout_s)

    async def execute_batch(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send ``commands`` (each its name and arguments) in one round trip under the redis
        guard; return their raw replies in order (bytes, int, None, lists; an error reply as
        its ``ResponseError``); retried as a whole under the guard, like a pipeline."""
        send = self._send
        return await self.execute(lambda client: send(client, commands))

    async def execute_durable(self, command: Callable[[Any], object]) -> Any:
        """Run one write (queued on a pipeline by ``command``) followed by ``WAIT`` for
        ``wait_replicas`` replicas; retried under the guard (raising :class:`NotReplicated`
        at last) when fewer acknowledged it in time. Without replicas to wait for, a plain
        guarded command. The write must be idempotent: it may run more than once."""
        replicas, timeout_ms = self.wait_replicas, self._wait_timeout_ms

        async def run(client: Redis) -> Any:
            pipe = client.pipeline(transaction=False)
            command(pipe)
            if replicas:
                pipe.execute_command("WAIT", replicas, timeout_ms)
            replies: list[Any] = await pipe.execute()
            if replicas and int(replies[-1]) < replicas:
                raise NotReplicated(f"{replies[-1]} of {replicas} replicas within {timeout_ms} ms")
            return replies[0]

        return await self.execute(run)

    async def ping(self) -> bool:
        """True when Redis answers within the timeout."""
        try:
            result: Any = await self.execute(lambda r: r.ping())
        except (OSError, TimeoutError, ConnectionError):
            return False
        except Exception:  # noqa: BLE001 - any redis error means "not ready", reported as False
            return False
        return bool(result)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
