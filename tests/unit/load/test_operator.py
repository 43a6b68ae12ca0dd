"""The load generator's operator: a run may outlive one access token."""

from __future__ import annotations

import secrets

import fakeredis
import pytest

from common.config import SecuritySettings, Settings
from common.security.tokens import TokenService
from common.store import Store
from eventguard.load import Mix, operator_for


@pytest.fixture
def settings() -> Settings:
    return Settings(
        security=SecuritySettings(jwt_signing_key=secrets.token_urlsafe(48), access_ttl_s=600)
    )


async def test_the_token_is_renewed_once_half_its_lifetime_has_passed(settings: Settings) -> None:
    """Within half the TTL the same token is used; after it a fresh one, which verifies."""
    now = [0.0]
    operator = operator_for(settings)
    assert operator is not None
    operator._clock = lambda: now[0]
    first = operator.actor().token
    now[0] = 299.0
    assert operator.actor().token == first
    now[0] = 300.0
    second = operator.actor().token
    assert second != first
    assert second is not None
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    claims = await TokenService(settings.security, store=store).verify(second)
    assert (claims.sub, claims.role) == ("load-operator", "operator")


def test_release_requests_carry_the_current_operator(settings: Settings) -> None:
    """Every valid release request the mix makes carries the operator's current token."""
    operator = operator_for(settings)
    mix = Mix(
        {"quarantine.release.requested": "quarantine"},
        poison_share=0.0,
        duplicate_share=0.0,
        operator=operator,
    )
    _, sent, message = mix.next()
    assert sent.kind == "valid"
    assert operator is not None
    token = operator.actor().token
    assert token is not None
    assert token.encode() in message.body


def test_without_a_signing_key_there_is_no_operator() -> None:
    """No key, no tokens: release requests are left out of the mix."""
    assert operator_for(Settings()) is None


def test_discard_requests_carry_the_operator_and_expect_a_refusal(settings: Settings) -> None:
    """A valid discard request names an unknown record, carries the operator, and is answered."""
    operator = operator_for(settings)
    mix = Mix(
        {"quarantine.discard.requested": "quarantine"},
        poison_share=0.0,
        duplicate_share=0.0,
        operator=operator,
    )
    _, sent, message = mix.next()
    assert sent.kind == "valid"
    assert sent.answers == frozenset({"quarantine.release.refused"})
    assert operator is not None
    assert str(operator.actor().token).encode() in message.body
