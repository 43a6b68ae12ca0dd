"""Sessions: keyed by the SHA-256 of the whole token; per-user index, no pattern scans."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import fakeredis
import pytest

from common.security.sessions import SessionStore, session_id
from common.store import Store


class _NoScan(fakeredis.FakeAsyncRedis):
    """A fake Redis that fails any pattern scan."""

    async def scan(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: sessions must not need it."""
        raise AssertionError("SCAN used")

    async def keys(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: sessions must not need it."""
        raise AssertionError("KEYS used")


def _sessions(ttl_s: int = 3600) -> tuple[SessionStore, Store]:
    store = Store(_NoScan(), prefix="ss:")
    return SessionStore(store, ttl_s=ttl_s, now=lambda: 1_800_000_000.0), store


def test_session_id_is_sha256_of_the_whole_token() -> None:
    """Two tokens sharing a long prefix get different ids; the id is the full digest."""
    token = secrets.token_urlsafe(40)
    assert session_id(token) == hashlib.sha256(token.encode()).hexdigest()
    assert session_id(token + "a") != session_id(token + "b")


async def test_sessions_listed_and_revoked_per_user_without_scans() -> None:
    """Listing and revoking all of a user's sessions works from the index alone."""
    sessions, _ = _sessions()
    one, two, other = (secrets.token_urlsafe(32) for _ in range(3))
    await sessions.create(one, sub="alice")
    await sessions.create(two, sub="alice")
    await sessions.create(other, sub="bob")
    assert sorted(await sessions.list_for("alice")) == sorted([session_id(one), session_id(two)])
    assert await sessions.revoke_all("alice") == 2
    assert await sessions.get(one) is None
    assert await sessions.list_for("alice") == []
    assert await sessions.get(other) is not None


async def test_token_is_never_stored() -> None:
    """Redis holds the digest as key and facts as value, never the token."""
    sessions, store = _sessions()
    token = secrets.token_urlsafe(32)
    await sessions.create(token, sub="alice", data={"ip": "10.0.0.1"})
    raw = await store.client.get(store.key("security", "session", session_id(token)))
    assert raw is not None
    assert token.encode() not in raw
    assert token[:20].encode() not in raw
    found = await sessions.get(token)
    assert found is not None
    assert (found["sub"], found["ip"]) == ("alice", "10.0.0.1")


async def test_data_cannot_override_the_subject() -> None:
    """Caller data may not set the session's own facts."""
    sessions, _ = _sessions()
    with pytest.raises(ValueError, match="sub"):
        await sessions.create("t" * 40, sub="alice", data={"sub": "admin"})


async def test_single_revocation_and_ttl() -> None:
    """One session ends alone; sessions and the index expire with the TTL."""
    sessions, store = _sessions(ttl_s=600)
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await sessions.create(first, sub="alice")
    await sessions.create(second, sub="alice")
    assert await sessions.revoke(first)
    assert not await sessions.revoke(first)
    assert await sessions.list_for("alice") == [session_id(second)]
    ttl = await store.client.ttl(store.key("security", "user-sessions", "alice"))
    assert 0 < ttl <= 600


async def test_expired_sessions_are_pruned_from_the_index() -> None:
    """A session key gone by TTL disappears from the user's list."""
    sessions, store = _sessions()
    token = secrets.token_urlsafe(32)
    await sessions.create(token, sub="alice")
    await store.client.delete(store.key("security", "session", session_id(token)))
    assert await sessions.list_for("alice") == []
    assert await store.client.scard(store.key("security", "user-sessions", "alice")) == 0
