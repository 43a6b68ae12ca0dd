"""Authentication and authorisation for the ops server's HTTP routes.

A request carries ``Authorization: Bearer <access token>`` or ``X-API-Key: <key>``; a
WebSocket upgrade may instead offer the token as the subprotocol ``eventguard.bearer.<token>``
(browsers cannot set headers on a WebSocket; the server answers with ``eventguard.v1``, which
the client offers beside it, and never echoes the token). With none of them it is a guest.
Credentials that are present but wrong are refused (401), never downgraded to guest; two at
once are refused too. Then the access rules decide: 401 for a guest and 403 for a known caller
whose role is too low, and for any route without a rule (default deny). Public probes (exact
paths) pass untouched. When the credential store cannot be reached the answer is 503:
authentication fails closed.

Every denial is logged (``access.denied``: method, path, status, reason, and the subject once
known) without the credential or any header, and counted in
``eventguard_access_denied_total{surface="http", reason}``. Reasons are fixed short words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from common.config import Settings
from common.errors import EventGuardError
from common.security.apikeys import ApiKeyStore
from common.security.redaction import redact_text
from common.security.roles import Role
from common.security.rules import PUBLIC_ROUTES, AccessRules
from common.security.tokens import TokenError, TokenService

if TYPE_CHECKING:  # annotations only: importing common.store here would cycle via logging
    from common.metrics import Metrics
    from common.store import Store

__all__ = ["GUEST", "PRINCIPAL", "WS_BEARER_PREFIX", "WS_PROTOCOL", "AdminAuth", "Principal"]

# structlog directly, not common.logging: that module imports the redaction processor from
# this package, and this package must import without it.
_log = structlog.get_logger("eventguard.security")
_MAX_HEADER = 8_192
WS_PROTOCOL = "eventguard.v1"  # the subprotocol a WebSocket route answers with
WS_BEARER_PREFIX = "eventguard.bearer."  # an offered subprotocol carrying the access token
_PATH_IN_LOG = 200
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, role and how they proved it."""

    subject: str
    role: Role
    method: str  # "token", "api_key" or "none"


GUEST = Principal("anonymous", Role.GUEST, "none")
PRINCIPAL = web.RequestKey("principal", Principal)


class _Refused(Exception):
    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _protocol_tokens(request: web.Request) -> list[str]:
    """Tokens offered as ``eventguard.bearer.<token>`` subprotocols of a WebSocket upgrade."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return []
    offered = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    if len(offered) > _MAX_HEADER:
        raise _Refused("token_too_large")
    protocols = (p.strip() for p in offered.split(","))
    return [p.removeprefix(WS_BEARER_PREFIX) for p in protocols if p.startswith(WS_BEARER_PREFIX)]


def _bearer(header: str) -> str:
    if len(header) > _MAX_HEADER:
        raise _Refused("token_too_large")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii() or " " in token:
        raise _Refused("malformed_authorization")
    return token


class AdminAuth:
    """The middleware and the rule table of one ops server."""

    def __init__(
        self,
        *,
        tokens: TokenService | None,
        api_keys: ApiKeyStore | None,
        metrics: Metrics,
        rules: AccessRules | None = None,
    ) -> None:
        self.tokens = tokens
        self.api_keys = api_keys
        self.rules = rules or AccessRules()
        self._denials = metrics.security.denials

    @classmethod
    def from_settings(cls, settings: Settings, *, store: Store, metrics: Metrics) -> AdminAuth:
        """Tokens from the security settings (none when no signing key), API keys in Redis.

        A signing or verification key that is present but bad raises ConfigError naming it.
        """
        security = settings.security
        tokens = (
            TokenService(security, store=store) if security.jwt_signing_key is not None else None
        )
        api_keys = ApiKeyStore(store, default_ttl_s=security.api_key_ttl_s)
        return cls(tokens=tokens, api_keys=api_keys, metrics=metrics)

    def allow(self, method: str, path: str, role: Role | str) -> None:
        """Add a rule: ``role`` and above may call ``method path``."""
        self.rules.allow(method, path, role)

    async def authenticate(self, request: web.Request) -> Principal:
        """The caller; raises _Refused for credentials that are present but not valid."""
        authorization = request.headers.getall("Authorization", [])
        api_key = request.headers.getall("X-API-Key", [])
        offered = _protocol_tokens(request)
        if len(authorization) + len(api_key) + len(offered) > 1:
            raise _Refused("ambiguous_credentials")
        try:
            if authorization:
                return await self._by_token(_bearer(authorization[0]))
            if offered:
                if not offered[0] or not offered[0].isascii():
                    raise _Refused("malformed_authorization")
                return await self._by_token(offered[0])
            if api_key:
                return await self._by_api_key(api_key[0])
        except (RedisError, OSError):
            raise _Refused("auth_unavailable", 503) from None
        except EventGuardError:  # the redis guard: open breaker, timeout, budget spent
            raise _Refused("auth_unavailable", 503) from None
        return GUEST

    async def _by_token(self, token: str) -> Principal:
        if self.tokens is None:
            raise _Refused("tokens_not_configured")
        try:
            claims = await self.tokens.verify(token)
        except TokenError as error:
            raise _Refused(error.reason) from None
        return Principal(claims.sub, claims.role, "token")

    async def _by_api_key(self, presented: str) -> Principal:
        if len(presented) > _MAX_HEADER:
            raise _Refused("invalid_api_key")
        found = await self.api_keys.verify(presented.strip()) if self.api_keys else None
        if found is None:
            raise _Refused("invalid_api_key")
        return Principal(f"apikey:{found.key_id}", found.role, "api_key")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, then apply the rules; public probes pass untouched."""
        if (request.method, request.path) in PUBLIC_ROUTES:
            return await handler(request)
        try:
            principal = await self.authenticate(request)
        except _Refused as refused:
            return self._deny(request, refused.status, refused.reason, None)
        decision = self.rules.check(request.method, request.path, principal.role)
        if not decision.allowed:
            status = 401 if principal.role is Role.GUEST else 403
            return self._deny(request, status, decision.reason, principal)
        request[PRINCIPAL] = principal
        return await handler(request)

    def _deny(
        self, request: web.Request, status: int, reason: str, principal: Principal | None
    ) -> web.Response:
        self._denials.labels("http", reason.partition(":")[0]).inc()
        _log.warning(
            "access.denied",
            method=request.method,
            path=redact_text(request.path)[:_PATH_IN_LOG],  # a token pasted into a URL
            status=status,
            reason=reason,
            subject=principal.subject if principal else None,
            role=principal.role.value if principal else None,
        )
        error = {401: "unauthorized", 403: "forbidden"}.get(status, "unavailable")
        headers = {"WWW-Authenticate": 'Bearer realm="eventguard"'} if status == 401 else None
        return web.json_response({"error": error, "reason": reason}, status=status, headers=headers)
