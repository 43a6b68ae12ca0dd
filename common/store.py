"""The Redis client every worker uses for its state.

Every command goes through :meth:`Store.execute`, which runs it behind the ``redis`` guard
(retry with a budget, circuit breaker, bulkhead, timeout). The runtime injects the guard from
its registry (so its breaker is the one the metrics, heartbeats and ``/readyz`` see); a Store
built without one gets a private ``redis`` guard with the kind's defaults, never a bare call.
Keys are namespaced with the configured prefix so tests and tenants never collide. Responses
are bytes (``decode_responses=False``) so stored message bodies stay byte for byte what arrived.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from common.config import Settings
from common.errors import ConfigError
from common.reliability.guard import Guard, Guards

__all__ = ["Store", "connect_redis"]

T = TypeVar("T")



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


class Store:
    """Namespaced, guarded access to Redis."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "eg:",
        guard: Guard | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.guard: Guard = guard if guard is not None else Guards().guard("redis")
        self._timeout_s = timeout_s  # per-attempt timeout; None: the guard's own

    @classmethod
    def from_settings(
        cls, settings: Settings, *, guard: Guard | None = None, needed_for: str = ""
    ) -> Store:
        """A store on ``settings``' Redis URL and key prefix (``ConfigError`` without a URL;
        ``needed_for`` says what wanted it)."""
        if settings.redis_url is None:
            why = f" ({needed_for})" if needed_for else ""
            raise ConfigError(f"EVENTGUARD_REDIS_URL is missing{why}")
        client = connect_redis(settings.redis_url.get_secret_value())
        return cls(client, prefix=settings.redis_key_prefix, guard=guard)

    def key(self, *parts: str) -> str:
        """The namespaced key for ``parts`` (joined with ``:``)."""
        return self.prefix + ":".join(parts)

    async def execute(self, op: Callable[[Redis], Awaitable[T]]) -> T:
        """Run one Redis operation (a command or a pipeline) under the redis guard."""
        client = self.client
        return await self.guard.call(lambda: op(client), timeout_s=self._timeout_s)

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
