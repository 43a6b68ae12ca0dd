"""Authentication and authorisation for the ops server's HTTP routes.

A request carries ``Authorization: Bearer <access token>`` or ``X-API-Key: <key>``; with
neither it is a guest. Credentials that are present but wrong are refused (401), never
downgraded to guest. Then the access rules decide (403 when the role is too low, and for any
route without a rule). Every denial is logged without the credential and counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from common.config import Settings
from common.logging import get_logger
from common.metrics import Metrics
from common.security.apikeys import ApiKeyStore
from common.security.roles import Role
from common.security.rules import PUBLIC_ROUTES, AccessRules
from common.security.tokens import TokenError, TokenService
from common.store import Store

__all__ = ["GUEST", "PRINCIPAL", "AdminAuth", "Principal"]

_log = get_logger("eventguard.security")
_MAX_HEADER = 8_192
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
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
        """Tokens from the security settings (none when no signing key), API keys in Redis."""
        tokens = (
            TokenService(settings.security, store=store)
            if settings.security.jwt_signing_key is not None
            else None
        )
        return cls(tokens=tokens, api_keys=ApiKeyStore(store), metrics=metrics)

    def allow(self, method: str, path: str, role: Role | str) -> None:
        """Add a rule: ``role`` and above may call ``method path``."""
        self.rules.allow(method, path, role)

    async def authenticate(self, request: web.Request) -> Principal:
        """The caller; raises _Refused for credentials that are present but not valid."""
        authorization = request.headers.get("Authorization")
        api_key = request.headers.get("X-API-Key")
        if authorization is not None and api_key is not None:
            raise _Refused("ambiguous_credentials")
        if authorization is not None:
            if len(authorization) > _MAX_HEADER:
                raise _Refused("token_too_large")
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _Refused("malformed_authorization")
            if self.tokens is None:
                raise _Refused("tokens_not_configured")
            try:
                claims = await self.tokens.verify(token.strip())
            except TokenError as error:
                raise _Refused(error.reason) from None
            return Principal(claims.sub, claims.role, "token")
        if api_key is not None:
            found = await self.api_keys.verify(api_key) if self.api_keys else None
            if found is None:
                raise _Refused("invalid_api_key")
            return Principal(f"apikey:{found.key_id}", found.role, "api_key")
        return GUEST

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticate, then apply the rules; public probes pass untouched."""
        if (request.method, request.path) in PUBLIC_ROUTES:
            return await handler(request)
        try:
            principal = await self.authenticate(request)
        except _Refused as refused:
            return self._deny(request, 401, refused.reason, None)
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
            path=request.path[:200],
            status=status,
            reason=reason,
            subject=principal.subject if principal else None,
            role=principal.role.value if principal else None,
        )
        headers = {"WWW-Authenticate": 'Bearer realm="eventguard"'} if status == 401 else None
        return web.json_response(
            {"error": "unauthorized" if status == 401 else "forbidden", "reason": reason},
            status=status,
            headers=headers,
        )
