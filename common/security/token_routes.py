"""The token lifecycle over HTTP, mounted by the ops server under ``/admin/tokens/``.

* ``POST /admin/tokens/refresh`` (anyone holding a refresh token): ``{"refresh_token"}`` ->
  a new access and refresh token of the same family. Presenting a refresh token a second time
  is reuse: the whole family (refresh and access tokens) is revoked and the answer is 401.
* ``POST /admin/tokens/logout`` (user and above, with the access token): revokes that access
  token and its family, so its refresh token stops working too.
* ``POST /admin/tokens/revoke`` (admin): ``{"jti": ...}`` revokes one token,
  ``{"sub": ...}`` every token issued to that subject until now.

Refusals say only ``invalid_token``; the precise reason is logged (``token.refused``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

import structlog
from aiohttp import web
from pydantic import Field, StringConstraints, model_validator

from common.problems import Problem
from common.security.http import PRINCIPAL, AdminAuth, Principal
from common.security.tokens import TokenError, TokenService
from common.service import AdminRoute
from common.validation import EmptyBody, RequestModel, body_of

__all__ = ["LogoutBody", "RefreshBody", "RevokeBody", "TokenPair", "routes"]

_log = structlog.get_logger("eventguard.security")
_Token = Annotated[str, StringConstraints(min_length=1, max_length=8_192)]
_Claim = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RefreshBody(RequestModel):
    """A refresh token to exchange."""

    refresh_token: _Token = Field(repr=False)


class TokenPair(RequestModel):
    """A new access token and refresh token (the access token lives ``expires_in`` seconds)."""

    access_token: str = Field(repr=False)
    refresh_token: str = Field(repr=False)
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int


class LogoutBody(EmptyBody):
    """Nothing is needed: the access token presented names its family."""


class LoggedOut(RequestModel):
    """The access token and its family are revoked."""

    logged_out: bool


class RevokeBody(RequestModel):
    """Exactly one of ``jti`` (one token) or ``sub`` (every token of a subject until now)."""

    jti: _Claim | None = None
    sub: _Claim | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.jti is None) == (self.sub is None):
            raise ValueError("give exactly one of jti or sub")
        return self


class Revoked(RequestModel):
    """What was revoked."""

    revoked: Literal["jti", "sub"]
    jti: str | None = None
    sub: str | None = None
    issued_until: datetime | None = None


def _service(auth: AdminAuth) -> TokenService:
    if auth.tokens is None:
        raise Problem(503, "tokens are not configured on this worker", code="tokens_unavailable")
    return auth.tokens


def routes(auth: AdminAuth) -> list[AdminRoute]:
    """The token routes, bound to ``auth``'s token service."""

    async def refresh(request: web.Request) -> web.Response:
        tokens = _service(auth)
        body = body_of(request, RefreshBody)
        try:
            access, refresh_token = await tokens.refresh(body.refresh_token)
        except TokenError as error:
            _log.warning("token.refused", route="refresh", reason=error.reason)
            await auth.count_failure(request)
            raise Problem(401, "invalid_token", code="invalid_token") from None
        # The audit record names who refreshed: the subject the new tokens were issued to.
        claims = await tokens.verify(access)
        request[PRINCIPAL] = Principal(claims.sub, claims.role, "token", claims=claims)
        pair = TokenPair(
            access_token=access,
            refresh_token=refresh_token,
            expires_in=tokens.settings.access_ttl_s,
        )
        return web.json_response(pair.model_dump())

    async def logout(request: web.Request) -> web.Response:
        tokens = _service(auth)
        principal = request[PRINCIPAL]
        claims = principal.claims
        if claims is None:
            raise Problem(400, "log out with the access token itself", code="not_a_token")
        await tokens.revoke(claims)
        if claims.family:
            await tokens.revoke_family(claims.family)
        return web.json_response(LoggedOut(logged_out=True).model_dump())

    async def revoke(request: web.Request) -> web.Response:
        tokens = _service(auth)
        body = body_of(request, RevokeBody)
        if body.jti is not None:
            await tokens.revoke_jti(body.jti)
            answer = Revoked(revoked="jti", jti=body.jti)
        else:  # the model requires exactly one of the two
            since = await tokens.revoke_subject(body.sub or "")
            answer = Revoked(revoked="sub", sub=body.sub, issued_until=since)
        return web.json_response(answer.model_dump(mode="json", exclude_none=True))

    return [
        AdminRoute(
            "POST",
            "tokens/refresh",
            refresh,
            "guest",
            "token.refresh",
            body=RefreshBody,
            response=TokenPair,
            summary="exchange a refresh token",
        ),
        AdminRoute(
            "POST",
            "tokens/logout",
            logout,
            "user",
            "token.logout",
            body=LogoutBody,
            response=LoggedOut,
            summary="revoke this access token's family",
        ),
        AdminRoute(
            "POST",
            "tokens/revoke",
            revoke,
            "admin",
            "token.revoke",
            body=RevokeBody,
            response=Revoked,
            summary="revoke a token or a subject's tokens",
        ),
    ]
