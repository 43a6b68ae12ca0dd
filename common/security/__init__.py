"""Security: tokens, roles and access rules, API keys, sessions, event authorisation."""

from __future__ import annotations

import secrets

from common.config import SecuritySettings
from common.redaction import redact_secrets
from common.security.actors import verify_actor
from common.security.apikeys import ApiKey, ApiKeyStore
from common.security.http import GUEST, PRINCIPAL, AdminAuth, Principal
from common.security.producers import DEFAULT_PRODUCERS, WORKER_USERS, ProducerPolicy
from common.security.roles import Role, parse_role, satisfies
from common.security.rules import PUBLIC_ROUTES, AccessRules, Decision
from common.security.sessions import SessionStore, session_id
from common.security.tokens import Claims, TokenError, TokenService

__all__ = [
    "DEFAULT_PRODUCERS",
    "GUEST",
    "PRINCIPAL",
    "PUBLIC_ROUTES",
    "WORKER_USERS",
    "AccessRules",
    "AdminAuth",
    "ApiKey",
    "ApiKeyStore",
    "Claims",
    "Decision",
    "Principal",
    "ProducerPolicy",
    "Role",
    "SessionStore",
    "TokenError",
    "TokenService",
    "demo_settings",
    "parse_role",
    "redact_secrets",
    "satisfies",
    "session_id",
    "verify_actor",
]


def demo_settings(*, any_type_producers: frozenset[str] = frozenset()) -> SecuritySettings:
    """Security settings with a signing key generated now, for ``eventguard demo`` and tests."""
    return SecuritySettings(
        jwt_signing_key=secrets.token_urlsafe(48),
        jwt_kid=f"demo-{secrets.token_hex(4)}",
        any_type_producers=any_type_producers,
    )
