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
idempotency claims and done marks, the quarantine's dead-letter writes): hand-encoded RESP
written at once on a connection of their own, the replies parsed as they arrive
(:mod:`common.resp_link`), without redis-py's per-command pipeline machinery or a pool checkout
and read call per batch. Clients the link cannot reach (fakeredis in the demo and unit tests,
a credential provider) take a redis-py pipeline with the callbacks off instead: the same raw
replies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from common.config import Settings
from common.errors import ConfigError, NotReplicated
from common.reliability.guard import Guard, Guards
from common.resp_link import Arg, RespLink

__all__ = [
    "FAILOVER_BREAKER",
    "Arg",
    "Store",
    "connect_redis",
    "connect_sentinel",
    "guard_overrides",
]

# Sentinel promotes a replica 2-3 s after the primary dies. The Redis breaker's defaults (open
# 2 s, doubling) often probed just before the promotion and then stayed open 4 s more, with
# every consumer paused; behind Sentinels it probes every second while open, so consumers
# resume at most about a second after the promotion.
FAILOVER_BREAKER: dict[str, bool | int | float | str | None] = {
    "breaker_open_s": 1.0,
    "breaker_open_multiplier": 1.0,
}

T = TypeVar("T")


async def _send_pipelined(client: Redis, commands: Sequence[Sequence[Arg]]) -> list[Any]:
    """The commands through a redis-py pipeline with its response callbacks off (raw replies):
    for clients the link cannot reach (fakeredis, a credential provider)."""
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


def guard_overrides(settings: Settings) -> dict[str, dict[str, bool | int | float | str | None]]:
    """The guards' overrides of ``settings``; behind Sentinels, :data:`FAILOVER_BREAKER` under
    whatever ``EVENTGUARD_RELIABILITY__DEPENDENCIES`` sets for ``redis``."""
    overrides = dict(settings.reliability.dependencies)
    if settings.redis_sentinels:
        overrides["redis"] = {**FAILOVER_BREAKER, **overrides.get("redis", {})}
    return overrides


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
        # Batches go on a connection of their own where the client is a real one.
        self._link = RespLink.for_client(client) if type(client) is Redis else None

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
        link = self._link
        if link is None:
            return await self.execute(lambda client: _send_pipelined(client, commands))
        return await self.execute(lambda _client: link.send(commands))

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
        """Close the connection pool and the batches' link."""
        if self._link is not None:
            self._link.close()
        await self.client.aclose()
