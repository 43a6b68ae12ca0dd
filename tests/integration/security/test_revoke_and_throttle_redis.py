"""Finding 5 and 7 against the real Redis: `eventguard token revoke --sub` reaches every replica,
and the failed-authentication counters count and expire there."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from common.config import Settings
from common.security import cli as security_cli
from common.security.keys import demo_settings
from common.security.throttle import AuthThrottle
from common.security.tokens import TokenError, TokenService
from common.store import Store, connect_redis
from common.testing import forget_prefix


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    """A Store on the real Redis under a prefix unique to this test; cleaned up after."""
    store = Store(connect_redis(redis_url), prefix=f"egtest:sechttp:{uuid.uuid4().hex[:12]}:")
    try:
        yield store
    finally:
        await forget_prefix(store.client, store.prefix)
        await store.close()


async def test_cli_revoke_by_subject_is_seen_by_a_running_verifier(
    store: Store, redis_url: str
) -> None:
    """`token revoke --sub` writes the subject's not-before; a replica refuses the old token."""
    security = demo_settings()
    replica = TokenService(security, store=store)  # the wall clock, like the CLI's
    token = replica.issue("alice", "admin")
    assert (await replica.verify(token)).sub == "alice"
    parser = argparse.ArgumentParser(prog="eventguard")
    security_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["token", "revoke", "--sub", "alice"])
    settings = Settings(
        redis_url=SecretStr(redis_url), redis_key_prefix=store.prefix, security=security
    )
    assert await args.func(args, settings) == 0
    with pytest.raises(TokenError, match="revoked"):
        await replica.verify(token)


async def test_failure_counters_block_at_the_limit_and_say_how_long(store: Store) -> None:
    """Three failures reach the limit; the wait is the window's remaining seconds."""
    throttle = AuthThrottle(store, limits={"addr": 3}, window_s=30)
    scopes = [("addr", "192.0.2.7")]
    for _ in range(2):
        await throttle.failed(scopes)
    assert await throttle.retry_after(scopes) is None
    await throttle.failed(scopes)
    wait = await throttle.retry_after(scopes)
    assert wait is not None
    assert 1 <= wait <= 30
    assert await throttle.retry_after([("addr", "192.0.2.8")]) is None
