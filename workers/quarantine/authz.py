"""Who may ask the quarantine worker for what, when the request arrives as an event.

Admin routes are checked by the ops server from each route's ``min_role``. Events carry an
``actor`` (subject, role, optional tenant) and never a credential: the pipeline's admission
(:mod:`common.security.admission`) has already checked that the producer may publish the
type, may assert that actor, and that the actor holds the type's ``act`` role, so an actor
that reaches a handler is a verified identity. This module adds what each request needs: a
release needs an operator or admin actor, a permanent block an admin actor.
"""

from __future__ import annotations

from common.errors import Reject
from schemas.envelope import Actor

__all__ = ["ADMIN_ROLES", "RELEASE_ROLES", "require_role"]

RELEASE_ROLES = frozenset({"operator", "admin"})
ADMIN_ROLES = frozenset({"admin"})


def require_role(actor: Actor | None, allowed: frozenset[str], *, action: str) -> str:
    """The acting subject when ``actor`` holds one of ``allowed``; else Reject (unauthorized)."""
    if actor is None:
        raise Reject(f"{action} needs an actor with role {sorted(allowed)}", reason="unauthorized")
    if actor.role not in allowed:
        raise Reject(
            f"{action} needs role {' or '.join(sorted(allowed))}, got {actor.role!r}",
            reason="unauthorized",
        )
    return actor.subject
