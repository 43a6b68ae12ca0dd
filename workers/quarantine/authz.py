"""Who may ask the quarantine worker for what, when the request arrives as an event.

Admin routes are checked by the ops server from each route's ``min_role``. Events carry an
``actor`` (subject, role, optional tenant) and never a credential: the pipeline's admission
(:mod:`common.security.admission`) has already checked that the producer may publish the
type, may assert that actor, and that the actor holds the type's ``act`` role, so an actor
that reaches a handler is a verified identity. This module adds what each request needs: a
release needs an operator or admin actor, a permanent block an admin actor.
"""

from __future__ import annotations

from common.security.actors import require_role

__all__ = ["ADMIN_ROLES", "RELEASE_ROLES", "require_role"]

RELEASE_ROLES = frozenset({"operator", "admin"})
ADMIN_ROLES = frozenset({"admin"})
