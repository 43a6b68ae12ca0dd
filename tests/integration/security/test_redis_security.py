"""Revocation, refresh families, API keys and sessions against the real Redis.

Each test gets its own key prefix and deletes every key under it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from common.config import Settings
from common.security import cli as security_cli
from common.security.apikeys import API_KEY_PREFIX, ApiKeyStore
from common.security.keys import demo_settings
from common.security.sessions import SessionStore
from common.security.tokens import TokenError, TokenService
from common.store import Store, connect_redis

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """A Store on the real Redis under a prefix unique to this test; cleaned up after."""
    prefix = f"egtest:security:{uuid.uuid4().hex[:12]}:"
    store = Store(connect_redis(redis_url), prefix=prefix)
    try:
        yield store
    finally:
        keys = [key async for key in store.client.scan_iter(match=prefix + "*", count=10_000)]
        if keys:
            await store.client.delete(*keys)
        await store.close()


async def test_revocation_is_shared_by_replicas_and_expires_with_the_token(store: Store) -> None:
    """A token revoked through one replica is refused by another until it would expire."""
    settings = demo_settings()
    first = TokenService(settings, store=store)
    second = TokenService(settings, store=store)
    token = first.issue("alice", "operator", ttl_s=300)
    claims = await second.verify(token)
    await first.revoke(claims)
    with pytest.raises(TokenError, match="revoked"):
        await second.verify(token)
    ttl = await store.client.ttl(store.key("security", "revoked", claims.jti))
    assert 290 <= ttl <= 300 + settings.leeway_s


async def test_concurrent_refresh_with_one_token_lets_one_win_and_kills_the_family(
    store: Store,
) -> None:
    """Two replicas racing with the same refresh token: one pair is issued, then all is revoked."""
    settings = demo_settings()
    replicas = [TokenService(settings, store=store) for _ in range(2)]
    access, refresh = replicas[0].issue_pair("alice", "user")
    results = await asyncio.gather(
        *(replica.refresh(refresh) for replica in replicas), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, tuple)]
    losers = [r for r in results if isinstance(r, TokenError)]
    assert (len(winners), len(losers)) == (1, 1)
    assert losers[0].reason == "refresh_reused"
    new_access, new_refresh = winners[0]
    for token, kind in [(access, "access"), (new_access, "access"), (new_refresh, "refresh")]:
        with pytest.raises(TokenError, match="revoked"):
            await replicas[1].verify(token, expected_type=kind)  # type: ignore[arg-type]


async def test_apikey_cli_create_list_revoke(
    store: Store, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apikey create|list|revoke` work on the real Redis; the secret is shown once only."""
    settings = Settings(redis_url=redis_url, redis_key_prefix=store.prefix)
    parser_sub = _subparsers()
    create = parser_sub.parse_args(["apikey", "create", "--name", "billing", "--role", "service"])
    assert await create.func(create, settings) == 0
    facts_line, key = capsys.readouterr().out.strip().splitlines()
    facts = json.loads(facts_line)
    keys = ApiKeyStore(store)
    found = await keys.verify(key)
    assert found is not None
    assert found.key_id == facts["key_id"]

    listing = parser_sub.parse_args(["apikey", "list"])
    assert await listing.func(listing, settings) == 0
    listed = capsys.readouterr().out
    assert facts["key_id"] in listed
    secret = key.removeprefix(API_KEY_PREFIX).partition("_")[2]  # the secret may hold "_"
    assert secret not in listed
    row = json.loads(listed.strip().splitlines()[0])
    created = datetime.fromisoformat(row["created_at"])  # ISO 8601 UTC, not epoch seconds
    assert created.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - created).total_seconds()) < 300

    revoke = parser_sub.parse_args(["apikey", "revoke", facts["key_id"]])
    assert await revoke.func(revoke, settings) == 0
    assert await keys.verify(key) is None
    assert await revoke.func(revoke, settings) == 1  # already gone


async def test_wrong_secret_under_a_real_key_id_is_refused(store: Store) -> None:
    """A stored key id with another secret proves nothing on the real Redis either."""
    keys = ApiKeyStore(store)
    facts, key = await keys.create("reports", "operator", ttl_s=3600)
    assert await keys.verify(f"egk_{facts.key_id}_{secrets.token_urlsafe(32)}") is None
    assert await keys.verify(key) is not None
    ttl = await store.client.ttl(store.key("security", "apikey", facts.key_id))
    assert 0 < ttl <= 3600


async def test_sessions_listed_and_revoked_from_the_user_index(store: Store) -> None:
    """A user's sessions are listed and revoked from their index set, digests only."""
    sessions = SessionStore(store, ttl_s=600)
    tokens = [secrets.token_urlsafe(32) for _ in range(3)]
    for token in tokens[:2]:
        await sessions.create(token, sub="alice")
    await sessions.create(tokens[2], sub="bob")
    assert len(await sessions.list_for("alice")) == 2
    stored = [key async for key in store.client.scan_iter(match=store.prefix + "*", count=10_000)]
    assert not any(token.encode() in key for key in stored for token in tokens)
    assert await sessions.revoke_all("alice") == 2
    assert await sessions.list_for("alice") == []
    assert await sessions.get(tokens[2]) is not None


def _subparsers() -> argparse.ArgumentParser:
    """An argparse parser with the security commands registered."""
    parser = argparse.ArgumentParser(prog="eventguard")
    security_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser
