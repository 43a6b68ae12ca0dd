"""Sessions, keyed by the SHA-256 of their token (never a slice of it).

Each user has an index set of their session keys, so listing or revoking all of a user's
sessions needs no pattern scan.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from common.store import Store

__all__ = ["SessionStore", "session_id"]


def session_id(token: str) -> str:
    """The id of the session for ``token``: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Creates, reads and revokes sessions in Redis."""

    def __init__(self, store: Store, *, ttl_s: int) -> None:
        self._store = store
        self._ttl_s = ttl_s

    def _session(self, sid: str) -> str:
        return self._store.key("security", "session", sid)

    def _user(self, sub: str) -> str:
        return self._store.key("security", "user-sessions", sub)

    async def create(self, token: str, *, sub: str, data: dict[str, str] | None = None) -> str:
        """Record a session for ``token``; returns its id."""
        sid = session_id(token)
        value = json.dumps({"sub": sub, "created_at": time.time(), **(data or {})})
        session_key, user_key = self._session(sid), self._user(sub)

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(session_key, value, ex=self._ttl_s)
                pipe.sadd(user_key, sid)
                pipe.expire(user_key, self._ttl_s)
                return await pipe.execute()

        await self._store.execute(write)
        return sid

    async def get(self, token: str) -> dict[str, Any] | None:
        """The session of ``token``, if any."""
        key = self._session(session_id(token))
        raw: Any = await self._store.execute(lambda r: r.get(key))
        return json.loads(raw) if raw else None

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
        """End the session of ``token``."""
        sid = session_id(token)
        raw = await self.get(token)
        if raw is None:
            return False
        key, user_key = self._session(sid), self._user(str(raw["sub"]))

        async def delete(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(user_key, sid)
                return await pipe.execute()

        await self._store.execute(delete)
        return True

    async def revoke_all(self, sub: str) -> int:
        """End every session of ``sub``; returns how many there were."""
        user_key = self._user(sub)
        ids: Any = await self._store.execute(lambda r: r.smembers(user_key))
        keys = [self._session(raw.decode()) for raw in ids]

        async def delete(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                if keys:
                    pipe.delete(*keys)
                pipe.delete(user_key)
                return await pipe.execute()

        await self._store.execute(delete)
        return len(keys)
