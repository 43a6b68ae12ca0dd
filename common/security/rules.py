"""Access rules: (route or event type, action) -> the least role allowed. No rule means deny.

Routes: the action is the HTTP method and the route is an exact path, or a path with aiohttp
``{placeholders}`` that each match one non-empty segment. Public routes are listed exactly
(``/healthz``, ``/readyz``, ``/metrics``, ``/admin/openapi.json``, GET and HEAD); a path that
merely ends like one is not public, and ``/healthz/`` is not ``/healthz``.

Event types: the action ``act`` is "the worker acts on behalf of the event's ``actor``"; the
rule names the least role the actor's verified token must hold. :data:`EVENT_RULES` covers
the request types of the catalogue; result and notification types have no ``act`` rule, so
nothing is ever done on an actor's behalf because of one. Which *services* may publish a type
at all is the producer table (:mod:`common.security.producers`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from common.security.roles import Role, parse_role, satisfies

__all__ = ["EVENT_RULES", "PUBLIC_ROUTES", "AccessRules", "Decision"]

PUBLIC_ROUTES = frozenset(
    (method, path)
    for path in ("/healthz", "/readyz", "/metrics", "/admin/openapi.json")
    for method in ("GET", "HEAD")
)
_PLACEHOLDER = re.compile(r"\{[^/{}]+\}")
_MAX_PATH = 2_048

EVENT_RULES: Mapping[tuple[str, str], Role] = {
    ("ai.completion.requested", "act"): Role.USER,
    ("opportunity.scan.requested", "act"): Role.USER,
    ("marketplace.strategy.purchased", "act"): Role.USER,
    ("marketplace.strategy.revoked", "act"): Role.OPERATOR,
    ("quarantine.requested", "act"): Role.OPERATOR,
    ("quarantine.release.requested", "act"): Role.OPERATOR,
    ("quarantine.discard.requested", "act"): Role.OPERATOR,
    # Switching a model off or on and silencing alerts are operators' day-to-day levers, as on
    # the admin API (``ai.model.enable``, ``health.silence``): reversible, and audited.
    ("ai.model.disable.requested", "act"): Role.OPERATOR,
    ("ai.model.enable.requested", "act"): Role.OPERATOR,
    ("health.silence.requested", "act"): Role.OPERATOR,
    ("health.silence.expire.requested", "act"): Role.OPERATOR,
}


@dataclass(frozen=True)
class Decision:
    """The outcome of a check: allowed, or the reason it is not."""

    allowed: bool
    reason: str = ""
    required: Role | None = None


def _role(role: Role | str) -> Role:
    return role if isinstance(role, Role) else parse_role(role)


class AccessRules:
    """The rule table; ``allow``/``allow_event`` add rules, ``check``/``check_event`` decide."""

    def __init__(self, events: Mapping[tuple[str, str], Role] = EVENT_RULES) -> None:
        self._exact: dict[tuple[str, str], Role] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Role]] = []
        self._events: dict[tuple[str, str], Role] = dict(events)

    # -- routes ---------------------------------------------------------------------------------

    def allow(self, method: str, path: str, role: Role | str) -> None:
        """Let ``role`` and above call ``method path``.

        Repeating a rule is harmless; a second rule for the same route with another role is a
        ValueError (two owners disagree, and neither should silently win).
        """
        required = _role(role)
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"route {path!r} must start with /")
        if _PLACEHOLDER.search(path):
            pieces = _PLACEHOLDER.split(path)
            regex = "^" + "[^/]+".join(re.escape(piece) for piece in pieces) + "$"
            for m, pattern, existing in self._patterns:
                if m == method and pattern.pattern == regex:
                    if existing is not required:
                        raise ValueError(f"conflicting rules for {method} {path}")
                    return
            self._patterns.append((method, re.compile(regex), required))
            return
        existing_role = self._exact.setdefault((method, path), required)
        if existing_role is not required:
            raise ValueError(f"conflicting rules for {method} {path}")

    def required(self, method: str, path: str) -> Role | None:
        """The least role for ``method path``, or None when no rule exists."""
        method = method.upper()
        if len(path) > _MAX_PATH:
            return None
        rule = self._exact.get((method, path))
        if rule is not None:
            return rule
        for rule_method, pattern, role in self._patterns:
            if rule_method == method and pattern.fullmatch(path):
                return role
        return None

    def check(self, method: str, path: str, role: Role) -> Decision:
        """Decide whether ``role`` may call ``method path``."""
        if (method.upper(), path) in PUBLIC_ROUTES:
            return Decision(True)
        required = self.required(method, path)
        if required is None:
            return Decision(False, "no_rule")
        if not satisfies(role, required):
            return Decision(False, "insufficient_role", required)
        return Decision(True, required=required)

    def routes(self) -> list[tuple[str, str, Role]]:
        """The route rules (method, path or pattern, role), for docs and tests."""
        exact = [(m, p, r) for (m, p), r in self._exact.items()]
        return sorted(exact + [(m, p.pattern, r) for m, p, r in self._patterns])

    # -- event types ------------------------------------------------------------------------

    def allow_event(self, event_type: str, action: str, role: Role | str) -> None:
        """Let ``role`` and above do ``action`` for ``event_type`` (replaces an existing rule)."""
        self._events[(event_type, action)] = _role(role)

    def check_event(self, event_type: str, action: str, role: Role) -> Decision:
        """Decide whether ``role`` may do ``action`` for ``event_type``."""
        required = self._events.get((event_type, action))
        if required is None:
            return Decision(False, "no_rule")
        if not satisfies(role, required):
            return Decision(False, "insufficient_role", required)
        return Decision(True, required=required)
