"""Roles, producer authorisation, API keys, sessions, redaction and start-up refusals."""

from __future__ import annotations

import fakeredis
import pytest

from common.config import SecuritySettings, Settings, require_production
from common.errors import ConfigError
from common.redaction import redact_secrets
from common.security import ApiKeyStore, ProducerPolicy, Role, SessionStore, parse_role, satisfies
from common.security.sessions import session_id
from common.store import Store
from schemas.registry import CATALOGUE


def _store() -> Store:
    return Store(fakeredis.FakeAsyncRedis(), prefix="sec:")


def test_role_ladder_and_service() -> None:
    """Higher roles include lower ones; service is granted only explicitly (or to admin)."""
    assert satisfies(Role.ADMIN, Role.OPERATOR)
    assert not satisfies(Role.USER, Role.OPERATOR)
    assert not satisfies(Role.SERVICE, Role.USER)
    assert not satisfies(Role.OPERATOR, Role.SERVICE)
    assert satisfies(Role.SERVICE, Role.SERVICE)


def test_unknown_role_is_rejected() -> None:
    """An unknown role is an error, never promoted."""
    with pytest.raises(ValueError, match="unknown role"):
        parse_role("root")


def test_every_catalogue_type_has_a_producer_rule() -> None:
    """Each event type names its producers; nobody else may publish it."""
    policy = ProducerPolicy.from_settings(Settings())
    assert policy.types() >= set(CATALOGUE)
    assert policy.is_allowed("quarantine.entry.added", "quarantine")
    assert not policy.is_allowed("quarantine.entry.added", "ai_fallback")
    assert not policy.is_allowed("quarantine.release.requested", "chat")
    assert not policy.is_allowed("no.such.type", "operator")
    assert not policy.is_allowed("health.heartbeat", None)


def test_settings_extend_the_producer_table() -> None:
    """Settings add producers per type and, for development, users allowed every type."""
    settings = Settings(
        security=SecuritySettings(
            producers={"marketplace.strategy.purchased": frozenset({"shop"})},
            any_type_producers=frozenset({"dev"}),
        )
    )
    policy = ProducerPolicy.from_settings(settings)
    assert policy.is_allowed("marketplace.strategy.purchased", "shop")
    assert policy.is_allowed("ai.completion.succeeded", "dev")
    assert not policy.is_allowed("ai.completion.succeeded", "shop")


async def test_api_keys_are_stored_as_digests_and_revocable() -> None:
    """The store keeps no secret; a revoked key stops working."""
    store = _store()
    keys = ApiKeyStore(store)
    key, secret = await keys.create("billing", "service")
    raw = await store.client.hgetall(store.key("security", "apikey", key.key_id))
    stored = b"".join(v for v in raw.values() if isinstance(v, bytes))
    assert stored
    assert secret.rsplit("_", 1)[-1].encode() not in stored
    assert (await keys.verify(secret)) == key
    assert [k.key_id for k in await keys.list()] == [key.key_id]
    assert await keys.revoke(key.key_id)
    assert await keys.verify(secret) is None


async def test_sessions_keyed_by_sha256_and_revoked_per_user() -> None:
    """Sessions use the token's SHA-256 and a per-user index; revoke_all ends them all."""
    store = _store()
    sessions = SessionStore(store, ttl_s=60)
    first = await sessions.create("token-one-long-enough", sub="alice")
    await sessions.create("token-two-long-enough", sub="alice")
    assert first == session_id("token-one-long-enough")
    assert len(first) == 64
    assert len(await sessions.list_for("alice")) == 2
    assert await sessions.revoke_all("alice") == 2
    assert await sessions.get("token-one-long-enough") is None


def test_redaction_removes_secrets_wherever_they_are() -> None:
    """Secret keys, JWT-looking strings and URL passwords are replaced in any log field."""
    jwtish = "eyJ" + "a" * 20 + "." + "b" * 20 + "." + "c" * 10
    event = {
        "event": "x",
        "authorization": "Bearer abc",
        "nested": {"api_key": "k", "note": f"saw {jwtish}"},
        "url": "amqp://user:hunter2@rabbit:5672/",  # pragma: allowlist secret (a test value)
    }
    cleaned = redact_secrets(None, "info", event)
    text = str(cleaned)
    for secret in ("Bearer abc", jwtish, "hunter2"):
        assert secret not in text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "EVENTGUARD_BROKER_URL"),
        ({"broker_url": "amqp://u@h/"}, "no password"),
        ({"security": SecuritySettings(jwt_signing_key="short")}, "shorter than 32"),
        ({}, "EVENTGUARD_SECURITY__JWT_SIGNING_KEY"),
        ({}, "EVENTGUARD_REDIS_URL"),
    ],
)
def test_run_refuses_to_start_without_secrets(env: dict[str, object], named: str) -> None:
    """Missing or weak secrets stop start-up with the variable named."""
    with pytest.raises(ConfigError, match=named):
        require_production(Settings(**env))  # type: ignore[arg-type]
