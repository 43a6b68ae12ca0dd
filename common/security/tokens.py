"""Access and refresh tokens (PyJWT): issued, verified, revoked, rotated.

* Every claim is required on verify: sub, role, type, iat, nbf, exp, jti, aud, iss; times
  are timezone-aware (UTC) and checked against an injectable clock with a small leeway.
* The algorithm is pinned per key (:mod:`common.security.keys`): the ``kid`` header picks the
  key, and only that key's algorithm is accepted.
* Revocation by ``jti`` in Redis until the token would have expired anyway, and per subject:
  a not-before instant that refuses every token issued to the subject up to it.
* Access tokens live at most ``max_access_ttl_s`` (24 h), refresh tokens ``refresh_ttl_s``.
* Refresh rotation with reuse detection: a refresh token belongs to a family (``fam``), and so
  do the access tokens issued with it. Each refresh token may be exchanged once; presenting it
  again revokes the whole family, refresh and access tokens alike.

Refusals raise :class:`TokenError` whose ``reason`` is a fixed, short word: safe to return to
a client and to log, and never holding any part of the token.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import jwt
import structlog

from common.config import SecuritySettings
from common.errors import ConfigError, EventGuardError
from common.security.keys import KeyRing
from common.security.roles import Role, parse_role

if TYPE_CHECKING:  # annotations only: importing common.store here would cycle via logging
    from common.store import Store

__all__ = ["Claims", "TokenError", "TokenKind", "TokenService"]

_log = structlog.get_logger("eventguard.security")
TokenKind = Literal["access", "refresh"]
_REQUIRED = ["sub", "role", "type", "iat", "nbf", "exp", "jti", "aud", "iss"]
_MAX_CLAIM_CHARS = 256
_MAX_TTL_S = 366 * 24 * 3600


class TokenError(EventGuardError):
    """A token was refused; ``reason`` is safe to show and to log (it holds no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """A verified token's claims."""

    sub: str
    role: Role
    type: str
    jti: str
    issued_at: datetime
    expires_at: datetime
    family: str | None = None

    @property
    def exp(self) -> int:
        """Expiry as a Unix timestamp."""
        return int(self.expires_at.timestamp())


def _timestamp(payload: dict[str, Any], name: str) -> int:
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"invalid_claim:{name}")
    return int(value)


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str) or not value or len(value) > _MAX_CLAIM_CHARS:
        raise TokenError(f"invalid_claim:{name}")
    return value


class TokenService:
    """Issues and verifies tokens for one issuer and audience.

    ``store`` holds revocations and refresh families; a service without one can only issue
    (the CLI). ``now`` returns Unix seconds (tests inject a fixed one).
    """

    def __init__(
        self,
        settings: SecuritySettings,
        *,
        store: Store | None,
        now: Callable[[], float] = time.time,
        keys: KeyRing | None = None,
    ) -> None:
        self._settings = settings
        self._keys = keys or KeyRing.from_settings(settings)
        self._store = store
        self._now = now

    @property
    def settings(self) -> SecuritySettings:
        """The settings this service was built from (secrets stay SecretStr)."""
        return self._settings

    @property
    def keys(self) -> KeyRing:
        """The signing key and the verification keys."""
        return self._keys

    def now(self) -> datetime:
        """The service clock as an aware UTC datetime."""
        return datetime.fromtimestamp(int(self._now()), tz=UTC)

    # -- issuing ----------------------------------------------------------------------------

    def issue(
        self,
        sub: str,
        role: Role | str,
        *,
        kind: TokenKind = "access",
        ttl_s: int | None = None,
        family: str | None = None,
    ) -> str:
        """A signed token for ``sub`` with ``role`` (ValueError for a bad argument)."""
        role = role if isinstance(role, Role) else parse_role(role)
        if kind not in {"access", "refresh"}:
            raise ValueError(f"unknown token kind {kind!r}")
        if not sub or len(sub) > _MAX_CLAIM_CHARS:
            raise ValueError("sub must be 1 to 256 characters")
        default_ttl = (
            self._settings.access_ttl_s if kind == "access" else self._settings.refresh_ttl_s
        )
        ttl = default_ttl if ttl_s is None else ttl_s
        if not 0 < ttl <= _MAX_TTL_S:
            raise ValueError(f"ttl must be between 1 s and {_MAX_TTL_S} s")
        ceiling = self.max_ttl_s(kind)
        if ttl > ceiling:
            raise ValueError(
                f"a {kind} token may live at most {ceiling} s (security.max_access_ttl_s / "
                f"security.refresh_ttl_s); services use API keys"
            )
        now = self.now()
        claims: dict[str, Any] = {
            "sub": sub,
            "role": role.value,
            "type": kind,
            "iat": now,
            "nbf": now,
            "exp": datetime.fromtimestamp(now.timestamp() + ttl, tz=UTC),
            "jti": uuid.uuid4().hex,
            "aud": self._settings.audience,
            "iss": self._settings.issuer,
        }
        if kind == "refresh":
            family = family or uuid.uuid4().hex
        if family is not None:
            claims["fam"] = family
        signing = self._keys.signing
        return jwt.encode(
            claims,
            signing.key,
            algorithm=signing.algorithm,
            headers={"kid": signing.kid, "typ": "JWT"},
        )

    def max_ttl_s(self, kind: TokenKind = "access") -> int:
        """The longest lifetime a ``kind`` token may be issued with."""
        if kind == "access":
            return self._settings.max_access_ttl_s
        return self._settings.refresh_ttl_s

    def issue_pair(self, sub: str, role: Role | str) -> tuple[str, str]:
        """An access token and a refresh token starting a new family (both carry it)."""
        family = uuid.uuid4().hex
        return (
            self.issue(sub, role, family=family),
            self.issue(sub, role, kind="refresh", family=family),
        )

    # -- verifying --------------------------------------------------------------------------

    def _decode(self, token: str, expected_type: TokenKind) -> Claims:
        """Signature and every claim; not revocation (see :meth:`verify`)."""
        if not isinstance(token, str) or not token:
            raise TokenError("malformed_token")
        if len(token) > self._settings.max_token_bytes:
            raise TokenError("token_too_large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed_token") from None
        kid = header.get("kid")
        key = self._keys.verifier(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_key")
        if header.get("alg") != key.algorithm:
            raise TokenError("algorithm_mismatch")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                # Times are checked below against the injected clock; presence is required here.
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise TokenError("wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong_issuer") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"missing_claim:{error.claim}") from None
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature") from None
        except jwt.PyJWTError:
            raise TokenError("invalid_token") from None
        return self._check_claims(payload, expected_type)

    def _check_claims(self, payload: dict[str, Any], expected_type: TokenKind) -> Claims:
        now, leeway = int(self._now()), self._settings.leeway_s
        iat, nbf, exp = (_timestamp(payload, name) for name in ("iat", "nbf", "exp"))
        if exp <= now - leeway:
            raise TokenError("expired")
        if nbf > now + leeway:
            raise TokenError("not_yet_valid")
        if iat > now + leeway:
            raise TokenError("issued_in_future")
        if payload["type"] != expected_type:
            raise TokenError("wrong_token_type")
        try:
            role = parse_role(_text(payload, "role"))
        except ValueError:
            raise TokenError("unknown_role") from None
        family = payload.get("fam")
        if family is not None and (not isinstance(family, str) or len(family) > 64):
            raise TokenError("invalid_claim:fam")
        if expected_type == "refresh" and not family:
            raise TokenError("missing_claim:fam")
        return Claims(
            sub=_text(payload, "sub"),
            role=role,
            type=expected_type,
            jti=_text(payload, "jti"),
            issued_at=datetime.fromtimestamp(iat, tz=UTC),
            expires_at=datetime.fromtimestamp(exp, tz=UTC),
            family=family,
        )

    async def verify(self, token: str, *, expected_type: TokenKind = "access") -> Claims:
        """Verify ``token`` fully, revocation included; TokenError when refused."""
        claims = self._decode(token, expected_type)
        if await self._revoked(claims):
            raise TokenError("revoked")
        return claims

    # -- revocation and rotation --------------------------------------------------------------

    def _redis(self) -> Store:
        if self._store is None:
            raise ConfigError("token verification needs Redis (revocation and refresh families)")
        return self._store

    def _key(self, *parts: str) -> str:
        return self._redis().key("security", *parts)

    def _ttl(self, claims: Claims) -> int:
        return max(1, claims.exp - int(self._now()) + self._settings.leeway_s)

    def _subject_key(self, sub: str) -> str:
        return self._key("subject-nbf", hashlib.sha256(sub.encode()).hexdigest()[:40])

    def _longest_ttl(self) -> int:
        longest = max(self._settings.max_access_ttl_s, self._settings.refresh_ttl_s)
        return longest + self._settings.leeway_s

    async def _revoked(self, claims: Claims) -> bool:
        """Revoked by jti, by family, or issued to a subject before its not-before."""
        keys = [self._subject_key(claims.sub), self._key("revoked", claims.jti)]
        if claims.family:
            keys.append(self._key("family-revoked", claims.family))
        found: list[Any] = await self._redis().execute(lambda r: r.mget(keys))
        not_before, *flags = found
        if any(flag is not None for flag in flags):
            return True
        return not_before is not None and claims.issued_at.timestamp() <= float(not_before)

    async def revoke(self, claims: Claims) -> None:
        """Refuse ``claims.jti`` from now until it would have expired."""
        key = self._key("revoked", claims.jti)
        ttl = self._ttl(claims)
        await self._redis().execute(lambda r: r.set(key, b"1", ex=ttl))

    async def revoke_jti(self, jti: str) -> None:
        """Refuse the token ``jti`` (whatever its kind) until any token could have expired."""
        if not jti or len(jti) > _MAX_CLAIM_CHARS:
            raise ValueError("jti must be 1 to 256 characters")
        key, ttl = self._key("revoked", jti), self._longest_ttl()
        await self._redis().execute(lambda r: r.set(key, b"1", ex=ttl))

    async def revoke_subject(self, sub: str) -> datetime:
        """Refuse every token issued to ``sub`` up to now (a per-subject not-before, kept until
        the longest-lived of them would have expired); returns that instant."""
        if not sub or len(sub) > _MAX_CLAIM_CHARS:
            raise ValueError("sub must be 1 to 256 characters")
        now = int(self._now())
        key, ttl = self._subject_key(sub), self._longest_ttl()
        await self._redis().execute(lambda r: r.set(key, str(now).encode(), ex=ttl))
        return datetime.fromtimestamp(now, tz=UTC)

    async def revoke_token(self, token: str) -> Claims:
        """Revoke a token that verifies (logout); returns its claims."""
        try:
            claims = self._decode(token, "access")
        except TokenError as error:
            if error.reason != "wrong_token_type":
                raise
            claims = self._decode(token, "refresh")
        await self.revoke(claims)
        return claims

    async def revoke_family(self, family: str) -> None:
        """Refuse every token of ``family`` until the longest of them would have expired."""
        key = self._key("family-revoked", family)
        ttl = self._settings.refresh_ttl_s + self._settings.leeway_s
        await self._redis().execute(lambda r: r.set(key, b"1", ex=ttl))

    async def is_revoked_claims(self, claims: Claims) -> bool:
        """True when verified ``claims`` have been revoked since (by jti, family or subject)."""
        return await self._revoked(claims)

    async def is_revoked(self, jti: str) -> bool:
        """True when ``jti`` was revoked."""
        key = self._key("revoked", jti)
        found: Any = await self._redis().execute(lambda r: r.exists(key))
        return bool(found)

    async def refresh(self, refresh_token: str) -> tuple[str, str]:
        """Exchange a refresh token for a new pair in the same family.

        The first exchange of a refresh token wins (``SET NX`` on its jti); any later one is
        reuse: the family is revoked and TokenError("refresh_reused") raised.
        """
        claims = await self.verify(refresh_token, expected_type="refresh")
        family = claims.family or ""
        if not family:  # _check_claims requires it for refresh; kept for the type checker
            raise TokenError("missing_claim:fam")
        used_key = self._key("refresh-used", claims.jti)
        ttl = self._ttl(claims)
        first: Any = await self._redis().execute(lambda r: r.set(used_key, b"1", nx=True, ex=ttl))
        if not first:
            await self.revoke_family(family)
            # A stolen refresh token is the likely story: worth an operator's attention.
            _log.warning("token.refresh_reused", sub=claims.sub, family=family)
            raise TokenError("refresh_reused")
        return (
            self.issue(claims.sub, claims.role, family=family),
            self.issue(claims.sub, claims.role, kind="refresh", family=family),
        )
