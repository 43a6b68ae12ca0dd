"""Access rules: (method, exact path) -> the least role allowed. No rule means deny.

Public routes are listed exactly (``/healthz``, ``/readyz``, ``/metrics``); a path that merely
ends like one is not public. Paths with ``{placeholders}`` (aiohttp's syntax) match one segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.security.roles import Role, parse_role, satisfies

__all__ = ["PUBLIC_ROUTES", "AccessRules", "Decision"]

PUBLIC_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")})
_PLACEHOLDER = re.compile(r"\{[^/{}]+\}")


@dataclass(frozen=True)
class Decision:
    """The outcome of a check: allowed, or the reason it is not."""

    allowed: bool
    reason: str = ""
    required: Role | None = None


class AccessRules:
    """The rule table; ``allow`` adds rules, ``check`` decides (default deny)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Role] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Role]] = []

    def allow(self, method: str, path: str, role: Role | str) -> None:
        """Let ``role`` and above call ``method path``."""
        required = role if isinstance(role, Role) else parse_role(role)
        method = method.upper()
        if _PLACEHOLDER.search(path):
            pieces = _PLACEHOLDER.split(path)
            regex = "^" + "[^/]+".join(re.escape(piece) for piece in pieces) + "$"
            self._patterns.append((method, re.compile(regex), required))
        else:
            self._exact[(method, path)] = required

    def required(self, method: str, path: str) -> Role | None:
        """The least role for ``method path``, or None when no rule exists."""
        method = method.upper()
        rule = self._exact.get((method, path))
        if rule is not None:
            return rule
        for rule_method, pattern, role in self._patterns:
            if rule_method == method and pattern.match(path):
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
