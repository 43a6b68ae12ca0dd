"""API keys for services: ``egk_<key id>_<secret>``.

Only a SHA-256 digest is stored, bound to the key id (``sha256(version, key id, secret)``), with
the key's name, role, creation and optional expiry time; the secret itself is shown once, at
creation, and never stored or logged. The comparison is constant-time, and an unknown key id is
compared against a dummy digest so timing does not tell ids apart. The ``egk_`` prefix and the
id are labels to find the record: they prove nothing. The secret has 256 bits of entropy, so a
plain (fast) hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.security.roles import Role, parse_role

if TYPE_CHECKING:  # annotations only: importing common.store here would cycle via logging
    from common.store import Store

__all__ = ["API_KEY_PREFIX", "ApiKey", "ApiKeyStore"]

API_KEY_PREFIX = "egk_"  # a label, not a secret  # pragma: allowlist secret
_ID_BYTES = 6
_SECRET_BYTES = 32
_FORMAT = re.compile(r"egk_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"[0-9a-f]{12}")
_DOMAIN = b"eventguard.apikey.v1\x00"
_MAX_NAME = 100
_DUMMY = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key's public facts (never its secret or digest)."""

    key_id: str
    name: str
    role: Role
    created_at: float
    expires_at: float | None = None


def _digest(key_id: str, secret: str) -> bytes:
    return hashlib.sha256(_DOMAIN + key_id.encode() + b"\x00" + secret.encode()).digest()


def _facts(key_id: str, fields: dict[bytes, bytes]) -> ApiKey | None:
    try:
        expires = fields.get(b"expires_at")
        return ApiKey(
            key_id,
            fields[b"name"].decode(),
            parse_role(fields[b"role"].decode()),
            float(fields[b"created_at"]),
            float(expires) if expires else None,
        )
    except (KeyError, ValueError):
        return None  # a damaged record verifies nothing


class ApiKeyStore:
    """Creates, verifies, lists and revokes API keys in Redis."""

    def __init__(
        self,
        store: Store,
        *,
        default_ttl_s: int | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._index = store.key("security", "apikeys")
        self._default_ttl_s = default_ttl_s
        self._now = now

    def _record(self, key_id: str) -> str:
        return self._store.key("security", "apikey", key_id)

    async def create(
        self, name: str, role: Role | str, *, ttl_s: int | None = None
    ) -> tuple[ApiKey, str]:
        """A new key; returns its facts and the full key, which is shown once and not stored."""
        role = role if isinstance(role, Role) else parse_role(role)
        if role is Role.GUEST:
            raise ValueError("an API key for the guest role would prove nothing")
        if not name or len(name) > _MAX_NAME or not name.isprintable():
            raise ValueError(f"name must be 1 to {_MAX_NAME} printable characters")
        ttl = ttl_s if ttl_s is not None else self._default_ttl_s
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive")
        key_id = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        now = self._now()
        expires = now + ttl if ttl is not None else None
        mapping = {
            "digest": _digest(key_id, secret),
            "name": name.encode(),
            "role": role.value.encode(),
            "created_at": repr(now).encode(),
            "expires_at": repr(expires).encode() if expires is not None else b"",
        }
        record = self._record(key_id)

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(record, mapping=mapping)
                if ttl is not None:
                    pipe.expire(record, ttl)
                pipe.sadd(self._index, key_id)
                return await pipe.execute()

        await self._store.execute(write)
        return ApiKey(key_id, name, role, now, expires), f"{API_KEY_PREFIX}{key_id}_{secret}"

    async def verify(self, presented: str) -> ApiKey | None:
        """The key's facts when ``presented`` is a valid, unexpired, unrevoked key; else None."""
        match = _FORMAT.fullmatch(presented) if len(presented) < 100 else None
        if match is None:
            return None
        key_id, secret = match["id"], match["secret"]
        record = self._record(key_id)
        fields: Any = await self._store.execute(lambda r: r.hgetall(record))
        stored = fields.get(b"digest") if fields else None
        expected = stored if isinstance(stored, bytes) and len(stored) == 32 else _DUMMY
        if not hmac.compare_digest(expected, _digest(key_id, secret)) or expected is _DUMMY:
            return None
        key = _facts(key_id, fields)
        if key is None or (key.expires_at is not None and key.expires_at <= self._now()):
            return None
        return key

    async def exists(self, key_id: str) -> bool:
        """True while the key ``key_id`` is stored and unexpired (not revoked)."""
        if _KEY_ID.fullmatch(key_id) is None:
            return False
        record = self._record(key_id)
        fields: Any = await self._store.execute(lambda r: r.hgetall(record))
        key = _facts(key_id, fields) if fields else None
        return key is not None and (key.expires_at is None or key.expires_at > self._now())

    async def revoke(self, key_id: str) -> bool:
        """Delete a key; False when it did not exist (or ``key_id`` is not an id at all)."""
        if _KEY_ID.fullmatch(key_id) is None:
            return False
        record = self._record(key_id)

        async def delete(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(record)
                pipe.srem(self._index, key_id)
                return await pipe.execute()

        deleted, _ = await self._store.execute(delete)
        return bool(deleted)

    async def list(self) -> list[ApiKey]:
        """Every live key's facts, by id (expired ones are pruned from the index)."""
        ids: Any = await self._store.execute(lambda r: r.smembers(self._index))
        key_ids = sorted(raw.decode() for raw in ids)
        records = [self._record(key_id) for key_id in key_ids]

        async def read(r: Any) -> Any:
            async with r.pipeline(transaction=False) as pipe:
                for record in records:
                    pipe.hgetall(record)
                return await pipe.execute()

        rows: Any = await self._store.execute(read) if records else []
        gone = [key_id for key_id, fields in zip(key_ids, rows, strict=True) if not fields]
        if gone:
            await self._store.execute(lambda r: r.srem(self._index, *gone))
        facts = (_facts(k, f) for k, f in zip(key_ids, rows, strict=True) if f)
        return [key for key in facts if key is not None]
