"""Security: keys and tokens, roles and access rules, API keys, sessions, event authorisation,
the ops server's authentication middleware, and log redaction."""

from __future__ import annotations

from common.security.actors import DEFAULT_ACTOR_ASSERTERS, ActorPolicy, authorize_actor
from common.security.apikeys import API_KEY_PREFIX, ApiKey, ApiKeyStore
from common.security.http import GUEST, PRINCIPAL, AdminAuth, Principal
from common.security.keys import KeyRing, SigningKey, VerifyKey, demo_settings
from common.security.producers import ANONYMOUS, DEFAULT_PRODUCERS, WORKER_USERS, ProducerPolicy
from common.security.redaction import REDACTED, redact, redact_secrets, redact_text
from common.security.roles import Role, parse_role, satisfies
from common.security.rules import EVENT_RULES, PUBLIC_ROUTES, AccessRules, Decision
from common.security.sessions import SessionStore, session_id
from common.security.tokens import Claims, TokenError, TokenKind, TokenService

__all__ = [
    "ANONYMOUS",
    "API_KEY_PREFIX",
    "DEFAULT_ACTOR_ASSERTERS",
    "DEFAULT_PRODUCERS",
    "EVENT_RULES",
    "GUEST",
    "PRINCIPAL",
    "PUBLIC_ROUTES",
    "REDACTED",
    "WORKER_USERS",
    "AccessRules",
    "ActorPolicy",
    "AdminAuth",
    "ApiKey",
    "ApiKeyStore",
    "Claims",
    "Decision",
    "KeyRing",
    "Principal",
    "ProducerPolicy",
    "Role",
    "SessionStore",
    "SigningKey",
    "TokenError",
    "TokenKind",
    "TokenService",
    "VerifyKey",
    "authorize_actor",
    "demo_settings",
    "parse_role",
    "redact",
    "redact_secrets",
    "redact_text",
    "satisfies",
    "session_id",
]
