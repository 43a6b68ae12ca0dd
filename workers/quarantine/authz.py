"""Who may ask the quarantine worker for what, when the request arrives as an event.

Admin routes are checked by the ops server from each route's ``min_role``. Events carry an
``actor`` (subject and role); the producer policy of the pipeline already decides which
services may publish ``quarantine.requested`` / ``quarantine.release.requested`` at all, and
this module decides what the actor inside may ask: a release needs operator or admin, a
permanent block needs admin.
"""

from __future__ import annotations

from schemas.envelope import Actor

__all__ = ["ADMIN_ROLES", "RELEASE_ROLES", "actor_role", "actor_subject"]

RELEASE_ROLES = frozenset({"operator", "admin"})
ADMIN_ROLES = frozenset({"admin"})


def actor_role(actor: Actor | None) -> str | None:
    """The role the event's actor acts with (``None`` without an actor)."""
    if actor is None:
        return None
    return actor.role


def actor_subject(actor: Actor | None, default: str) -> str:
    """The actor's subject, or ``default``."""
    return actor.subject if actor is not None else default
