"""Authentication and authorisation for the ops server's HTTP routes.

A request carries ``Authorization: Bearer <access token>`` or ``X-API-Key: <key>``; a
WebSocket upgrade may instead offer the token as the subprotocol ``eventguard.bearer.<token>``
(browsers cannot set headers on a WebSocket; the server answers with ``eventguard.v1``, which
the client offers beside it, and never echoes the token). With none of them it is a guest.

Order of decisions, each answered with an RFC 9457 problem document:

1. public probes (exact paths) pass untouched; a path no route serves is 404, a method the
   route does not serve 405 (whoever asks: the route table is public, see /admin/openapi.json);
2. a client address or key id that failed too often is 429 with ``Retry-After``
   (:mod:`common.security.throttle`);
3. credentials that are present but wrong are 401 ``invalid_token`` (never downgraded to
   guest; two at once are refused too); no credentials on a route that needs a role is 401
   ``missing_credentials``. The precise reason (``expired``, ``unknown_key``, ``revoked``...)
   is never told to the caller: it goes to the log line and the metric label;
4. the access rules: 403 for a known caller whose role is too low, and for any route without a
   rule (default deny). When the credential store cannot be reached the answer is 503:
   authentication fails closed.

Every denial is logged (``access.denied``: method, path, status, reason, and the subject once
known) without the credential or any header, and counted in
``eventguard_access_denied_total{surface="http", reason}``. Reasons are fixed short words.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
import structlog
from aiohttp import web
from redis.exceptions import RedisError

from common.config import Settings
from common.errors import EventGuardError
from common.problems import problem_response
from common.security.apikeys import ApiKeyStore
from common.security.redaction import redact_text
from common.security.roles import Role
from common.security.rules import PUBLIC_ROUTES, AccessRules
from common.security.throttle import AuthThrottle, Scope
from common.security.tokens import Claims, TokenError, TokenService

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
_KEY_ID_CHARS = 64
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, role and how they proved it (the verified token's claims, or
    the API key's id), so a long-lived connection can re-check it."""

    subject: str
    role: Role
    method: str  # "token", "api_key" or "none"
    claims: Claims | None = None
    key_id: str | None = None


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


def _presented_key_id(request: web.Request, kids: frozenset[str]) -> str | None:
    """The key id a request's credential names, unverified, for the failure counters: a token's
    ``kid`` (``unknown`` when no key has it), or an API key's id."""
    api_key = request.headers.get("X-API-Key", "")
    if api_key.startswith("egk_"):
        return "apikey:" + api_key[4:].partition("_")[0][:_KEY_ID_CHARS]
    header = request.headers.get("Authorization", "")
    token = header.strip().partition(" ")[2].strip() if header else ""
    if not token:
        try:
            offered = _protocol_tokens(request)
        except _Refused:
            return None
        token = offered[0] if offered else ""
    if not token or len(token) > _MAX_HEADER:
        return None
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return f"kid:{kid}" if isinstance(kid, str) and kid in kids else "kid:unknown"


class AdminAuth:
    """The middleware and the rule table of one ops server."""

    def __init__(
        self,
        *,
        tokens: TokenService | None,
        api_keys: ApiKeyStore | None,
        metrics: Metrics,
        rules: AccessRules | None = None,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self.tokens = tokens
        self.api_keys = api_keys
        self.rules = rules or AccessRules()
        self.throttle = throttle  # failures per client address ("addr") and key id ("key")
        self._denials = metrics.security.denials

    @classmethod
    def from_settings(cls, settings: Settings, *, store: Store, metrics: Metrics) -> AdminAuth:
        """Tokens from the security settings (none when no signing key), API keys in Redis,
        failure counters in Redis.

        A signing or verification key that is present but bad raises ConfigError naming it.
        """
        security = settings.security
        tokens = (
            TokenService(security, store=store) if security.jwt_signing_key is not None else None
        )
        api_keys = ApiKeyStore(store, default_ttl_s=security.api_key_ttl_s)
        window = security.auth_failure_window_s
        return cls(
            tokens=tokens,
            api_keys=api_keys,
            metrics=metrics,
            throttle=AuthThrottle(
                store,
                limits={
                    "addr": security.auth_failure_limit,
                    "key": security.auth_failure_limit * _KEY_LIMIT_FACTOR,
                },
                window_s=window,
            ),
        )

    def allow(self, method: str, path: str, role: Role | str) -> None:
        """Add a rule: ``role`` and above may call ``method path``."""
        self.rules.allow(method, path, role)

    def now(self) -> float:
        """The clock tokens are checked against (Unix seconds)."""
        return self.tokens.now().timestamp() if self.tokens is not None else time.time()

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
        return Principal(claims.sub, claims.role, "token", claims=claims)

    async def _by_api_key(self, presented: str) -> Principal:
        if len(presented) > _MAX_HEADER:
            raise _Refused("invalid_api_key")
        found = await self.api_keys.verify(presented.strip()) if self.api_keys else None
        if found is None:
            raise _Refused("invalid_api_key")
        return Principal(f"apikey:{found.key_id}", found.role, "api_key", key_id=found.key_id)

    async def recheck(self, principal: Principal) -> str | None:
        """Why ``principal``'s credential no longer holds (``token_expired``, ``token_revoked``,
        ``api_key_revoked``), or None while it does; for connections that outlive a request."""
        claims = principal.claims
        if claims is not None and self.tokens is not None:
            if claims.exp <= self.now():
                return "token_expired"
            if await self.tokens.is_revoked_claims(claims):
                return "token_revoked"
        key_id, api_keys = principal.key_id, self.api_keys
        if key_id is not None and api_keys is not None and not await api_keys.exists(key_id):
            return "api_key_revoked"
        return None

    def _scopes(self, request: web.Request) -> list[Scope]:
        kids = self.tokens.keys.kids() if self.tokens is not None else frozenset()
        key_id = _presented_key_id(request, kids)
        scopes: list[Scope] = [("addr", request.remote or "unknown")]
        return [*scopes, ("key", key_id)] if key_id else scopes

    async def _throttled(self, request: web.Request) -> int | None:
        if self.throttle is None:
            return None
        return await self.throttle.retry_after(self._scopes(request))

    async def count_failure(self, request: web.Request) -> None:
        """Count one failed authentication against the request's address and key id."""
        if self.throttle is not None:
            await self.throttle.failed(self._scopes(request))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Route, throttle, authenticate, then apply the rules; public probes pass untouched."""
        if (request.method, request.path) in PUBLIC_ROUTES:
            return await handler(request)
        routing_error = request.match_info.http_exception
        if routing_error is not None:
            raise routing_error  # 404 / 405, answered as a problem by the outer middleware
        try:
            wait = await self._throttled(request)
            if wait is not None:
                return self._deny(request, 429, "throttled", None, retry_after=wait)
            try:
                principal = await self.authenticate(request)
            except _Refused as refused:
                if refused.status == 401:
                    await self.count_failure(request)
                return self._deny(request, refused.status, refused.reason, None)
        except (RedisError, OSError, EventGuardError):
            return self._deny(request, 503, "auth_unavailable", None)
        decision = self.rules.check(request.method, request.path, principal.role)
        if not decision.allowed:
            if principal.role is Role.GUEST:
                return self._deny(request, 401, "missing_credentials", principal)
            return self._deny(request, 403, decision.reason, principal)
        request[PRINCIPAL] = principal
        return await handler(request)

    def _deny(
        self,
        request: web.Request,
        status: int,
        reason: str,
        principal: Principal | None,
        *,
        retry_after: int | None = None,
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
            remote=request.remote,
        )
        return _denial(status, reason, retry_after)


_KEY_LIMIT_FACTOR = 10  # a key id is shared by many callers: ten times the per-address limit


def _denial(status: int, reason: str, retry_after: int | None) -> web.Response:
    """The answer to a refused request: as little as the caller needs, never the reason why
    their credential failed."""
    if status == 401 and reason == "missing_credentials":
        return problem_response(
            401,
            "missing credentials",
            code="missing_credentials",
            headers={"WWW-Authenticate": 'Bearer realm="eventguard"'},
        )
    if status == 401:
        return problem_response(
            401,
            "invalid_token",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer realm="eventguard", error="invalid_token"'},
        )
    if status == 403:
        detail = "your role may not call this route" if reason == "insufficient_role" else ""
        return problem_response(403, detail or "forbidden", code="forbidden")
    if status == 429:
        return problem_response(
            429,
            "too many failed authentications; retry later",
            code="too_many_failures",
            headers={"Retry-After": str(retry_after or 1)},
        )
    return problem_response(503, "authentication unavailable", code="auth_unavailable")
