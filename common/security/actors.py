"""Acting on someone's behalf: an event's ``actor`` is trusted only with a valid token."""

from __future__ import annotations

from common.security.roles import Role, satisfies
from common.security.tokens import TokenError, TokenService
from schemas.envelope import Actor

__all__ = ["verify_actor"]


async def verify_actor(actor: Actor | None, tokens: TokenService, *, at_least: Role) -> str:
    """The verified subject of ``actor`` when its token proves a role of at least ``at_least``.

    Raises TokenError (reason ``no_actor``, ``no_token``, ``actor_mismatch``,
    ``insufficient_role`` or the token's own reason) otherwise. The role claimed in the
    event is ignored: only the token's role counts.
    """
    if actor is None:
        raise TokenError("no_actor")
    if not actor.token:
        raise TokenError("no_token")
    claims = await tokens.verify(actor.token)
    if claims.sub != actor.subject:
        raise TokenError("actor_mismatch")
    if not satisfies(claims.role, at_least):
        raise TokenError("insufficient_role")
    return claims.sub
