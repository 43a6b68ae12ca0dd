"""Actor checks for release and permanent-block requests."""

from __future__ import annotations

import pytest

from common.errors import EventGuardError, Reject
from schemas.envelope import Actor
from workers.quarantine.authz import ADMIN_ROLES, RELEASE_ROLES, require_role


async def _verify(token: str) -> tuple[str, str]:
    if token == "good-op":
        return "alice", "operator"
    raise EventGuardError("invalid_token")


async def test_roles_without_token() -> None:
    """Without a token the actor's role decides; no actor at all is refused."""
    assert await require_role(Actor(subject="a", role="operator"), RELEASE_ROLES, action="x") == "a"
    with pytest.raises(Reject, match="needs role admin") as refused:
        await require_role(Actor(subject="a", role="operator"), ADMIN_ROLES, action="x")
    assert refused.value.reason == "unauthorized"
    with pytest.raises(Reject, match="needs an actor"):
        await require_role(None, RELEASE_ROLES, action="x")


async def test_verified_token_decides() -> None:
    """With a verifier, the token's role counts; a bad token or another subject is refused."""
    claimed_admin = Actor(subject="alice", role="admin", token="good-op")
    assert await require_role(claimed_admin, RELEASE_ROLES, action="x", verify=_verify) == "alice"
    with pytest.raises(Reject, match="needs role admin"):
        await require_role(claimed_admin, ADMIN_ROLES, action="x", verify=_verify)
    with pytest.raises(Reject, match="token refused"):
        await require_role(
            Actor(subject="alice", role="admin", token="forged"),
            RELEASE_ROLES,
            action="x",
            verify=_verify,
        )
    with pytest.raises(Reject, match="subject differs"):
        await require_role(
            Actor(subject="mallory", role="operator", token="good-op"),
            RELEASE_ROLES,
            action="x",
            verify=_verify,
        )


async def test_verifier_requires_a_token() -> None:
    """Once a verifier is wired, an actor without a token is refused whatever role it claims."""
    with pytest.raises(Reject, match="no token"):
        await require_role(
            Actor(subject="root", role="admin"), ADMIN_ROLES, action="x", verify=_verify
        )
