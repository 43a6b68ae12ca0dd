"""Console sign-in: an API key or an access token becomes a server-side session.

* ``POST /signin`` takes one credential (an API key, ``egk_...``, or an access token), verifies
  it with the same stores as the ops servers (:class:`~common.security.ApiKeyStore`,
  :class:`~common.security.TokenService`) and creates a session in
  :class:`~common.security.SessionStore`. The browser gets only a random session token in an
  ``HttpOnly; SameSite=Strict`` cookie; Redis keeps the SHA-256 of it with the subject, the
  role and a CSRF token, for ``session_ttl_s``. The credential itself is never stored.
* Every state-changing request (POST) must carry the session's CSRF token in the form field
  ``csrf`` (or the ``X-CSRF-Token`` header, which htmx sends); a missing or wrong one is 403.
* One-time sign-in links (``/signin/link?code=...``), minted by ``make demo``, are a random
  code whose SHA-256 is kept in Redis with the subject and role; redeeming deletes it (GETDEL).
* Roles map onto the ladder: ``user`` is a viewer (every page, no action), ``operator`` releases,
  discards and silences, ``admin`` blocks and unblocks. ``guest`` cannot sign in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from common.errors import EventGuardError
from common.logging import get_logger
from common.security.apikeys import API_KEY_PREFIX, ApiKeyStore
from common.security.roles import Role, parse_role, satisfies
from common.security.sessions import SessionStore
from common.security.tokens import TokenError, TokenService
from common.store import Store

__all__ = ["COOKIE", "ConsoleAuth", "Viewer"]

COOKIE = "eg_console"
_LINK_TTL_S = 600
_MAX_CREDENTIAL = 8_192
_log = get_logger("eventguard.console.auth")


@dataclass(frozen=True)
class Viewer:
    """The signed-in person: subject, role and the session's CSRF token."""

    subject: str
    role: Role
    csrf: str
    session_token: str

    def can(self, role: Role | str) -> bool:
        """True when this viewer's role is at least ``role``."""
        return satisfies(self.role, role if isinstance(role, Role) else parse_role(role))


class SignInRefused(EventGuardError):
    """The credential was not accepted (the reason is safe to show)."""


class ConsoleAuth:
    """Sessions, CSRF and one-time links for the console."""

    def __init__(
        self,
        *,
        store: Store,
        tokens: TokenService | None,
        api_keys: ApiKeyStore,
        session_ttl_s: int,
        secure_cookie: bool,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.api_keys = api_keys
        self.sessions = SessionStore(store, ttl_s=session_ttl_s, now=now)
        self._now = now
        self.session_ttl_s = session_ttl_s
        self.secure_cookie = secure_cookie

    # -- credentials -> sessions ---------------------------------------------------------------

    async def identify(self, credential: str) -> tuple[str, Role]:
        """(subject, role) proved by an API key or an access token; SignInRefused otherwise."""
        credential = credential.strip()
        if not credential or len(credential) > _MAX_CREDENTIAL or not credential.isascii():
            raise SignInRefused("enter an API key or an access token")
        if credential.startswith(API_KEY_PREFIX):
            found = await self.api_keys.verify(credential)
            if found is None:
                raise SignInRefused("that API key is not valid")
            return f"apikey:{found.key_id}", found.role
        if self.tokens is None:
            raise SignInRefused("tokens are not configured here; use an API key")
        try:
            claims = await self.tokens.verify(credential)
        except TokenError as error:
            raise SignInRefused(f"that token is not valid ({error.reason})") from None
        return claims.sub, claims.role

    async def open_session(self, subject: str, role: Role) -> str:
        """A new session for ``subject``; returns the token for the cookie."""
        if role in {Role.GUEST, Role.SERVICE}:
            raise SignInRefused(f"the {role.value} role cannot use the console")
        token = secrets.token_urlsafe(32)
        data = {"role": role.value, "csrf": secrets.token_urlsafe(24)}
        await self.sessions.create(token, sub=subject, data=data)
        _log.info("console.signed_in", subject=subject[:200], role=role.value)
        return token

    async def viewer(self, request: web.Request) -> Viewer | None:
        """The viewer of ``request``'s session cookie, if it is live."""
        return await self.session(request.cookies.get(COOKIE, ""))

    async def session(self, token: str) -> Viewer | None:
        """The viewer of session ``token``, if it is live (expiry checked on this clock too)."""
        if not token or len(token) > 128:
            return None
        found = await self.sessions.get(token)
        if found is None or float(found.get("expires_at", 0)) <= self._now():
            return None
        try:
            role = parse_role(str(found["role"]))
        except (KeyError, ValueError):
            return None
        return Viewer(str(found["sub"]), role, str(found["csrf"]), token)

    async def close_session(self, viewer: Viewer) -> None:
        """End ``viewer``'s session."""
        await self.sessions.revoke(viewer.session_token)
        _log.info("console.signed_out", subject=viewer.subject[:200])

    def set_cookie(self, response: web.StreamResponse, token: str) -> None:
        """Attach the session cookie."""
        response.set_cookie(
            COOKIE,
            token,
            max_age=self.session_ttl_s,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookie,
        )

    @staticmethod
    def clear_cookie(response: web.StreamResponse) -> None:
        """Remove the session cookie."""
        response.del_cookie(COOKIE, path="/")

    @staticmethod
    async def check_csrf(request: web.Request, viewer: Viewer) -> dict[str, str]:
        """The form fields of a POST whose CSRF token matches; HTTPForbidden otherwise."""
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        presented = request.headers.get("X-CSRF-Token") or fields.get("csrf", "")
        if not presented or not hmac.compare_digest(presented, viewer.csrf):
            _log.warning("console.csrf_refused", path=request.path[:200])
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
        return fields

    # -- one-time sign-in links ------------------------------------------------------------

    def _link_key(self, code: str) -> str:
        return self.store.key("console", "link", hashlib.sha256(code.encode()).hexdigest())

    async def mint_link(self, subject: str, role: Role) -> str:
        """A one-time code that signs ``subject`` in as ``role`` (valid 10 minutes)."""
        code = secrets.token_urlsafe(24)
        key, value = self._link_key(code), json.dumps({"sub": subject, "role": role.value})
        await self.store.execute(lambda r: r.set(key, value, ex=_LINK_TTL_S))
        return code

    async def redeem_link(self, code: str) -> tuple[str, Role]:
        """The (subject, role) of a one-time code, which is then gone."""
        if not code or len(code) > 128:
            raise SignInRefused("that sign-in link is not valid")
        key = self._link_key(code)
        raw: Any = await self.store.execute(lambda r: r.getdel(key))
        if not raw:
            raise SignInRefused("that sign-in link was used or has expired")
        found = json.loads(raw)
        return str(found["sub"]), parse_role(str(found["role"]))
