"""API keys: digests only, bound to their id, constant-time compare, the prefix is a label."""

from __future__ import annotations

import hashlib

import fakeredis
import pytest

from common.security.apikeys import ApiKeyStore
from common.security.roles import Role
from common.store import Store

NOW = 1_800_000_000.0


def _keys(now: list[float] | None = None) -> tuple[ApiKeyStore, Store]:
    clock = now if now is not None else [NOW]
    store = Store(fakeredis.FakeAsyncRedis(), prefix="ak:")
    return ApiKeyStore(store, now=lambda: clock[0]), store


async def _everything_stored(store: Store) -> bytes:
    client = store.client  # a raw dump for the test; the code under test goes through Store
    dump = b""
    for key in await client.keys("*"):
        kind = await client.type(key)
        if kind == b"hash":
            fields = await client.hgetall(key)
            dump += b"".join(bytes(k) + bytes(v) for k, v in fields.items())  # type: ignore[arg-type]  # stubs: bytes | str
        elif kind == b"set":
            dump += b"".join(bytes(v) for v in await client.smembers(key))  # type: ignore[arg-type]  # stubs: bytes | str
    return dump


async def test_created_key_verifies_and_only_a_digest_is_stored() -> None:
    """The full key verifies; Redis holds neither the key nor its secret, only a digest."""
    keys, store = _keys()
    facts, full = await keys.create("billing", "service")
    found = await keys.verify(full)
    assert found == facts
    assert found.role is Role.SERVICE
    secret = full.rsplit("_", 1)[1]
    stored = await _everything_stored(store)
    assert secret.encode() not in stored
    assert hashlib.sha256(secret.encode()).digest() not in stored  # bound to the id, too


async def test_valid_prefix_and_id_with_wrong_secret_is_refused() -> None:
    """A real key id with another secret proves nothing."""
    keys, _ = _keys()
    facts, full = await keys.create("billing", "operator")
    other = "B" if full[-1] != "B" else "C"
    assert await keys.verify(full[:-1] + other) is None
    assert await keys.verify(f"egk_{facts.key_id}_{'A' * 43}") is None


async def test_secret_of_one_key_does_not_open_another() -> None:
    """A secret moved under another key's id is refused (the digest binds the id)."""
    keys, _ = _keys()
    first, full_first = await keys.create("one", "operator")
    second, _ = await keys.create("two", "admin")
    moved = full_first.replace(first.key_id, second.key_id)
    assert await keys.verify(moved) is None


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "egk_",
        "sys_admin",
        "egk_notanid_secret",
        "egk_abcdef123456_short",
        "egk_ABCDEF123456_" + "A" * 43,
        "egk_abcdef123456_" + "A" * 43 + "extra",
        "egk_abcdef123456_" + "A" * 5_000,
        " egk_abcdef123456_" + "A" * 43,
    ],
)
async def test_malformed_or_unknown_keys_are_refused(presented: str) -> None:
    """Anything that is not a well-formed, stored key is refused."""
    keys, _ = _keys()
    await keys.create("billing", "admin")
    assert await keys.verify(presented) is None


async def test_revoked_key_is_refused_and_listing_never_shows_secrets() -> None:
    """Revocation is immediate; list shows facts only."""
    keys, _ = _keys()
    facts, full = await keys.create("billing", "service")
    other, _ = await keys.create("reports", "operator")
    listed = await keys.list()
    assert sorted(k.key_id for k in listed) == sorted([facts.key_id, other.key_id])
    assert full.rsplit("_", 1)[1] not in repr(listed)
    assert await keys.revoke(facts.key_id)
    assert await keys.verify(full) is None
    assert not await keys.revoke(facts.key_id)
    assert not await keys.revoke("*")
    assert [k.key_id for k in await keys.list()] == [other.key_id]


async def test_expired_key_is_refused() -> None:
    """A key past its lifetime is refused (by the clock, before Redis expires it)."""
    clock = [NOW]
    keys, store = _keys(clock)
    facts, full = await keys.create("temp", "service", ttl_s=3600)
    assert facts.expires_at == NOW + 3600
    record_ttl = await store.execute(lambda r: r.ttl(store.key("security", "apikey", facts.key_id)))
    assert 0 < record_ttl <= 3600
    clock[0] = NOW + 3601
    assert await keys.verify(full) is None


async def test_damaged_record_verifies_nothing() -> None:
    """A record whose role was changed to something unknown is refused, not promoted."""
    keys, store = _keys()
    facts, full = await keys.create("billing", "service")
    record = store.key("security", "apikey", facts.key_id)
    await store.execute(lambda r: r.hset(record, "role", b"root"))
    assert await keys.verify(full) is None


@pytest.mark.parametrize(
    ("name", "role", "ttl"),
    [("x", "guest", None), ("x", "root", None), ("", "service", None), ("x", "user", 0)],
)
async def test_create_refuses_bad_arguments(name: str, role: str, ttl: int | None) -> None:
    """A guest key, an unknown role, an empty name or a non-positive TTL are refused."""
    keys, _ = _keys()
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        await keys.create(name, role, ttl_s=ttl)
