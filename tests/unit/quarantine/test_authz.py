"""Actor checks for release and permanent-block requests (the actor is already admitted)."""

from __future__ import annotations

import pytest

from common.errors import Reject
from schemas.envelope import Actor
from workers.quarantine.authz import ADMIN_ROLES, RELEASE_ROLES, require_role


def test_role_checks() -> None:
    """The admitted actor's role decides; no actor at all is refused."""
    assert require_role(Actor(subject="a", role="operator"), RELEASE_ROLES, action="x") == "a"
    with pytest.raises(Reject, match="needs role admin"):
        require_role(Actor(subject="a", role="operator"), ADMIN_ROLES, action="x")
    with pytest.raises(Reject, match="needs an actor"):
        require_role(None, RELEASE_ROLES, action="x")
