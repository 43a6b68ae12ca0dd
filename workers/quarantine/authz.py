"""Who may ask the quarantine worker for what, when the request arrives as an event.

Admin routes are checked by the ops server from each route's ``min_role``. Events carry an
``actor`` (subject, role, optional token); the pipeline's producer policy already decides which
services may publish ``quarantine.requested`` / ``quarantine.release.requested`` at all, and
this module decides what the actor inside may ask: a release needs operator or admin, a
permanent block needs admin.

When a verifier is wired (``QuarantineService.verify_token``, e.g.
``common.security.tokens.TokenService.verify`` mapped to ``(claims.sub, claims.role)``), the
actor must carry a token and only its verified subject and role count: no token, a token that
fails verification, or one naming a different subject is refused. Without a verifier (unit
tests, a fleet without signing keys) the actor's stated role is taken as the word of the
producer the pipeline already authorised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from common.errors import EventGuardError, Reject
from schemas.envelope import Actor

__all__ = ["ADMIN_ROLES", "RELEASE_ROLES", "TokenVerifier", "actor_subject", "require_role"]

RELEASE_ROLES = frozenset({"operator", "admin"})
ADMIN_ROLES = frozenset({"admin"})

# token -> (subject, role); raises an EventGuardError when the token is refused.
TokenVerifier = Callable[[str], Awaitable[tuple[str, str]]]


def actor_subject(actor: Actor | None, default: str) -> str:
    """The actor's subject, or ``default``."""
    return actor.subject if actor is not None else default


async def require_role(
    actor: Actor | None,
    allowed: frozenset[str],
    *,
    action: str,
    verify: TokenVerifier | None = None,
) -> str:
    """The acting subject when ``actor`` holds one of ``allowed``; else Reject (unauthorized)."""
    if actor is None:
        raise Reject(f"{action} needs an actor with role {sorted(allowed)}", reason="unauthorized")
    subject, role = actor.subject, actor.role
    if verify is not None:
        if not actor.token:
            raise Reject(f"{action}: the actor carries no token", reason="unauthorized")
        try:
            subject, role = await verify(actor.token)
        except EventGuardError as error:
            raise Reject(
                f"{action}: actor token refused ({error})", reason="unauthorized"
            ) from None
        if subject != actor.subject:
            raise Reject(f"{action}: token subject differs from actor", reason="unauthorized")
    if role not in allowed:
        raise Reject(
            f"{action} needs role {' or '.join(sorted(allowed))}, got {role[:32]!r}",
            reason="unauthorized",
        )
    return subject
