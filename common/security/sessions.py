"""Sessions, keyed by the SHA-256 of their token (never a slice of it).

Redis holds ``session:<sha256 hex>`` -> JSON facts (subject, times, caller's data) with a TTL,
and ``user-sessions:<subject>`` -> the set of that user's session ids, so listing or revoking
all of a user's sessions needs no pattern scan. The token itself is never stored.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing common.store here would cycle via logging
    from common.store import Store

__all__ = ["SessionStore", "session_id"]

_RESERVED = frozenset({"sub", "created_at", "expires_at"})


def session_id(token: str) -> str:
    """The id of the session for ``token``: the SHA-256 of the whole token, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Creates, reads and revokes sessions in Redis."""

    def __init__(self, store: Store, *, ttl_s: int, now: Callable[[], float] = time.time) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._store = store
        self._ttl_s = ttl_s
        self._now = now

    def _session(self, sid: str) -> str:
        return self._store.key("security", "session", sid)

    def _user(self, sub: str) -> str:
        return self._store.key("security", "user-sessions", sub)

    async def create(self, token: str, *, sub: str, data: dict[str, str] | None = None) -> str:
        """Record a session for ``token``; returns its id. ``data`` cannot override the facts."""
        extra = data or {}
        if _RESERVED & extra.keys():
            raise ValueError(f"session data may not set {sorted(_RESERVED & extra.keys())}")
        sid = session_id(token)
        now = self._now()
        value = json.dumps(
            {**extra, "sub": sub, "created_at": now, "expires_at": now + self._ttl_s}
        )
        session_key, user_key = self._session(sid), self._user(sub)

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(session_key, value, ex=self._ttl_s)
                pipe.sadd(user_key, sid)
                # Every session has the same TTL, so the index lives as long as the newest one.
                pipe.expire(user_key, self._ttl_s)
                return await pipe.execute()

        await self._store.execute(write)
        return sid

    async def get(self, token: str) -> dict[str, Any] | None:
        """The session of ``token``, if any."""
        return await self.get_by_id(session_id(token))

    async def get_by_id(self, sid: str) -> dict[str, Any] | None:
        """The session with id ``sid``, if any."""
        key = self._session(sid)
        raw: Any = await self._store.execute(lambda r: r.get(key))
        found: dict[str, Any] | None = json.loads(raw) if raw else None
        return found

    async def list_for(self, sub: str) -> list[str]:
        """The live session ids of ``sub`` (expired ones are pruned from the index)."""
        user_key = self._user(sub)
        ids: Any = await self._store.execute(lambda r: r.smembers(user_key))
        sids = sorted(raw.decode() for raw in ids)
        keys = [self._session(sid) for sid in sids]

        async def check(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                return await pipe.execute()

        alive: Any = await self._store.execute(check) if keys else []
        gone = [sid for sid, ok in zip(sids, alive, strict=True) if not ok]
        if gone:
            await self._store.execute(lambda r: r.srem(user_key, *gone))
        return [sid for sid, ok in zip(sids, alive, strict=True) if ok]

    async def revoke(self, token: str) -> bool:
        """End the session of ``token``; False when there was none."""
        return await self.revoke_id(session_id(token))

    async def revoke_id(self, sid: str) -> bool:
        """End the session with id ``sid``; False when there was none."""
        found = await self.get_by_id(sid)
        if found is None:
            return False
        key, user_key = self._session(sid), self._user(str(found["sub"]))

        async def delete(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(user_key, sid)
                return await pipe.execute()

        deleted, _ = await self._store.execute(delete)
        return bool(deleted)

    async def revoke_all(self, sub: str) -> int:
        """End every session of ``sub``; returns how many were live."""
        user_key = self._user(sub)
        ids: Any = await self._store.execute(lambda r: r.smembers(user_key))
        keys = [self._session(raw.decode()) for raw in ids]

        async def delete(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                if keys:
                    pipe.delete(*keys)
                pipe.delete(user_key)
                return await pipe.execute()

        results: Any = await self._store.execute(delete)
        return int(results[0]) if keys else 0
