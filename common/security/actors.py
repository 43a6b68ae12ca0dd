"""Acting on someone's behalf: an event's ``actor`` is trusted only with a valid token.

The role written in the event is ignored; only the verified token's subject and role count,
and the event type's ``act`` rule (:data:`common.security.rules.EVENT_RULES`) names the least
role it must hold. No rule for the type means the worker never acts for an actor on it.
"""

from __future__ import annotations

from common.security.roles import Role, satisfies
from common.security.rules import AccessRules
from common.security.tokens import Claims, TokenError, TokenService
from schemas.envelope import Actor

__all__ = ["authorize_actor", "verify_actor"]


async def _verified(actor: Actor | None, tokens: TokenService) -> Claims:
    if actor is None:
        raise TokenError("no_actor")
    if not actor.token:
        raise TokenError("no_token")
    claims = await tokens.verify(actor.token)
    if claims.sub != actor.subject:
        raise TokenError("actor_mismatch")
    return claims


async def verify_actor(actor: Actor | None, tokens: TokenService, *, at_least: Role) -> str:
    """The verified subject of ``actor`` when its token proves a role of at least ``at_least``.

    Raises TokenError (reason ``no_actor``, ``no_token``, ``actor_mismatch``,
    ``insufficient_role`` or the token's own reason) otherwise.
    """
    claims = await _verified(actor, tokens)
    if not satisfies(claims.role, at_least):
        raise TokenError("insufficient_role")
    return claims.sub


async def authorize_actor(
    event_type: str, actor: Actor | None, tokens: TokenService, rules: AccessRules
) -> Claims:
    """The actor's verified claims when the type's ``act`` rule admits their role.

    TokenError as for :func:`verify_actor`, plus ``no_rule``; a worker turns it into
    ``Reject(..., reason="unauthorized")`` so the event is dead-lettered.
    """
    claims = await _verified(actor, tokens)
    decision = rules.check_event(event_type, "act", claims.role)
    if not decision.allowed:
        raise TokenError(decision.reason)
    return claims
