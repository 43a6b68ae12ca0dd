"""Acting for an event's actor: only a verified token's subject and role count."""

from __future__ import annotations

import pytest

from common.security.actors import authorize_actor, verify_actor
from common.security.roles import Role
from common.security.rules import AccessRules
from common.security.tokens import TokenError
from schemas.envelope import Actor
from tests.unit.security import _mint as m


async def test_actor_with_a_matching_token_is_authorised() -> None:
    """The token's subject matches and its role meets the type's rule."""
    tokens = m.service(now=m.NOW)
    actor = Actor(subject="alice", role="operator", token=tokens.issue("alice", "operator"))
    claims = await authorize_actor("quarantine.release.requested", actor, tokens, AccessRules())
    assert claims.role is Role.OPERATOR
    assert await verify_actor(actor, tokens, at_least=Role.USER) == "alice"


@pytest.mark.parametrize(
    ("subject", "claimed", "token_role", "event_type", "reason"),
    [
        ("alice", "admin", "user", "quarantine.release.requested", "insufficient_role"),
        ("mallory", "operator", "operator", "quarantine.release.requested", "actor_mismatch"),
        ("alice", "admin", "admin", "ai.completion.succeeded", "no_rule"),
    ],
)
async def test_actor_refusals(
    subject: str, claimed: str, token_role: str, event_type: str, reason: str
) -> None:
    """The claimed role is ignored; a foreign token or a type without a rule is refused."""
    tokens = m.service(now=m.NOW)
    actor = Actor(subject=subject, role=claimed, token=tokens.issue("alice", token_role))
    with pytest.raises(TokenError) as caught:
        await authorize_actor(event_type, actor, tokens, AccessRules())
    assert caught.value.reason == reason


async def test_actor_without_a_token_is_refused() -> None:
    """No actor or no token: refused, whatever role the event claims."""
    tokens = m.service(now=m.NOW)
    with pytest.raises(TokenError, match="no_actor"):
        await verify_actor(None, tokens, at_least=Role.USER)
    with pytest.raises(TokenError, match="no_token"):
        await verify_actor(Actor(subject="a", role="admin"), tokens, at_least=Role.USER)
