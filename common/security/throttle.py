"""A brake on guessing: failed authentications counted per client address and per key id.

One Redis round trip per request (a pipeline reading every scope's counter), one more per
failure.

Each failed authentication (credentials present but refused) adds one to a fixed-window counter
in Redis for the client address and one for the key id it named (a token's ``kid`` header, an
API key's id; ``unknown`` for a kid that no key has). While either counter is at the limit,
every request from that address or naming that key id is answered 429 with ``Retry-After``
(the seconds left in the window), before its credentials are even looked at.

Scope: the counters live in Redis, so they are shared by every worker process and replica on
the same Redis and key prefix, and survive restarts. The client address is the TCP peer
(``request.remote``): behind a reverse proxy it is the proxy's, and the per-key-id limit is the
one that still bites (forwarded headers are not trusted, since any client can set them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing common.store here would cycle via logging
    from common.store import Store

__all__ = ["AuthThrottle", "Scope"]

Scope = tuple[str, str]  # ("addr", "10.0.0.7") or ("key", "kid:k1")


class AuthThrottle:
    """At most ``limits[kind]`` failures per scope of that kind per ``window_s`` seconds,
    counted in ``store`` (a kind without a limit, or with 0, is not counted)."""

    def __init__(self, store: Store | None, *, limits: Mapping[str, int], window_s: int) -> None:
        self._store = store
        self.limits = {kind: limit for kind, limit in limits.items() if limit > 0}
        self.window_s = window_s

    @staticmethod
    def _key(store: Store, scope: Scope) -> str:
        kind, value = scope
        digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]
        return store.key("security", "authfail", kind, digest)

    async def retry_after(self, scopes: Sequence[Scope]) -> int | None:
        """Seconds until the first of ``scopes`` at its limit may try again; None when none is."""
        store, scopes = self._store, [s for s in scopes if s[0] in self.limits]
        if store is None or not scopes:
            return None
        keys = [self._key(store, scope) for scope in scopes]

        async def read(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            return await pipe.execute()

        found: list[Any] = await store.execute(read)
        waits = [
            max(1, int(ttl))
            for scope, count, ttl in zip(scopes, found[::2], found[1::2], strict=True)
            if count is not None and int(count) >= self.limits[scope[0]]
        ]
        return max(waits) if waits else None

    async def failed(self, scopes: Sequence[Scope]) -> None:
        """Count one failure against each of ``scopes``."""
        store, scopes = self._store, [s for s in scopes if s[0] in self.limits]
        if store is None or not scopes:
            return
        keys = [self._key(store, scope) for scope in scopes]
        window = self.window_s

        async def count(r: Any) -> Any:
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, window, nx=True)
            return await pipe.execute()

        await store.execute(count)
