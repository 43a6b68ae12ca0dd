"""API keys for services: ``egk_<key id>_<secret>``.

Only a SHA-256 digest of the secret is stored (with the key's id, name, role and creation
time), and the comparison is constant-time. The ``egk_`` prefix and the id are labels to find
the record; they prove nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from common.security.roles import Role, parse_role
from common.store import Store

__all__ = ["ApiKey", "ApiKeyStore"]

_PREFIX = "egk_"
_ID_BYTES = 6
_SECRET_BYTES = 32
_MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public facts."""

    key_id: str
    name: str
    role: Role
    created_at: float


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ApiKeyStore:
    """Creates, verifies, lists and revokes API keys in Redis."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._index = store.key("security", "apikeys")

    def _record(self, key_id: str) -> str:
        return self._store.key("security", "apikey", key_id)

    async def create(self, name: str, role: Role | str) -> tuple[ApiKey, str]:
        """A new key; returns its facts and the full key, which is shown once and not stored."""
        role = role if isinstance(role, Role) else parse_role(role)
        key_id = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = time.time()
        mapping = {
            "digest": _digest(secret),
            "name": name.encode(),
            "role": role.value.encode(),
            "created_at": str(now).encode(),
        }
        record = self._record(key_id)

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(record, mapping=mapping)
                pipe.sadd(self._index, key_id)
                return await pipe.execute()

        await self._store.execute(write)
        return ApiKey(key_id, name, role, now), f"{_PREFIX}{key_id}_{secret}"

    async def verify(self, presented: str) -> ApiKey | None:
        """The key's facts when ``presented`` is a valid, unrevoked key; else None."""
        if len(presented) > _MAX_KEY_CHARS or not presented.startswith(_PREFIX):
            return None
        key_id, _, secret = presented[len(_PREFIX) :].partition("_")
        if not key_id or not secret or not key_id.isalnum():
            return None
        record = self._record(key_id)
        fields: Any = await self._store.execute(lambda r: r.hgetall(record))
        stored = fields.get(b"digest") if fields else None
        # Compare against a dummy when the id is unknown, so timing does not tell ids apart.
        expected = stored if isinstance(stored, bytes) else _digest(secrets.token_hex(8))
        if not hmac.compare_digest(expected, _digest(secret)) or stored is None:
            return None
        try:
            role = parse_role(fields[b"role"].decode())
        except ValueError:
            return None
        return ApiKey(key_id, fields[b"name"].decode(), role, float(fields[b"created_at"]))

    async def revoke(self, key_id: str) -> bool:
        """Delete a key; False when it did not exist."""
        record = self._record(key_id)

        async def delete(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(record)
                pipe.srem(self._index, key_id)
                return await pipe.execute()

        deleted, _ = await self._store.execute(delete)
        return bool(deleted)

    async def list(self) -> list[ApiKey]:
        """Every key's facts (never a secret or digest)."""
        ids: Any = await self._store.execute(lambda r: r.smembers(self._index))
        key_ids = sorted(raw.decode() for raw in ids)
        records = [self._record(key_id) for key_id in key_ids]

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for record in records:
                    pipe.hgetall(record)
                return await pipe.execute()

        rows: Any = await self._store.execute(read) if records else []
        return [
            ApiKey(
                key_id,
                fields[b"name"].decode(),
                parse_role(fields[b"role"].decode()),
                float(fields[b"created_at"]),
            )
            for key_id, fields in zip(key_ids, rows, strict=True)
            if fields
        ]
