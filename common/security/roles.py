"""Roles: guest < user < operator < admin, and ``service`` for machines.

``service`` stands beside the human ladder: it may do what a rule grants ``service`` explicitly,
and nothing else. An unknown role is an error, never promoted or demoted to something known.
"""

from __future__ import annotations

import enum

__all__ = ["Role", "parse_role", "satisfies"]


class Role(enum.StrEnum):
    """Who a principal is."""

    GUEST = "guest"
    USER = "user"
    OPERATOR = "operator"
    ADMIN = "admin"
    SERVICE = "service"


_LADDER = {Role.GUEST: 0, Role.USER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


def parse_role(value: str) -> Role:
    """The role named ``value``; ValueError for anything else."""
    try:
        return Role(value)
    except ValueError:
        raise ValueError(f"unknown role {value[:32]!r}") from None


def satisfies(held: Role, required: Role) -> bool:
    """True when ``held`` may do what ``required`` may."""
    if required is Role.SERVICE or held is Role.SERVICE:
        return held is required or (held is Role.ADMIN and required is Role.SERVICE)
    return _LADDER[held] >= _LADDER[required]
