"""Access and refresh tokens (PyJWT): issued, verified, revoked, rotated.

* Every claim is required on verify: sub, role, type, iat, nbf, exp, jti, aud, iss.
* The algorithm is pinned per key: the ``kid`` header picks a key, and the token is verified
  with that key's algorithm only (no ``none``, no HMAC-with-a-public-key confusion).
* Several verification keys (rotation), one signing key.
* Revocation by ``jti`` in Redis until the token would have expired anyway.
* Refresh rotation with reuse detection: each refresh token belongs to a family; using one
  twice revokes the whole family.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from common.config import SecuritySettings
from common.errors import ConfigError, EventGuardError
from common.security.roles import Role, parse_role
from common.store import Store

__all__ = ["Claims", "TokenError", "TokenService", "VerifyKey"]

_REQUIRED = ["sub", "role", "type", "iat", "nbf", "exp", "jti", "aud", "iss"]
_HMAC = {"HS256", "HS384", "HS512"}


class TokenError(EventGuardError):
    """A token was refused; ``reason`` is safe to show and to log (it holds no token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifyKey:
    """One verification key with its pinned algorithm."""

    algorithm: str
    key: Any


@dataclass(frozen=True)
class Claims:
    """A verified token's claims."""

    sub: str
    role: Role
    type: str
    jti: str
    exp: int
    family: str | None = None


def _verification_key(algorithm: str, material: str) -> Any:
    if algorithm in _HMAC:
        return material.encode()
    return material  # PyJWT loads PEM public keys itself


def _public_from_private(algorithm: str, private_pem: str) -> Any:
    algo = jwt.get_algorithm_by_name(algorithm)
    private = algo.prepare_key(private_pem)
    return private.public_key()


class TokenService:
    """Issues and verifies tokens for one issuer and audience."""

    def __init__(
        self,
        settings: SecuritySettings,
        *,
        store: Store | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.jwt_signing_key is None:
            raise ConfigError("EVENTGUARD_SECURITY__JWT_SIGNING_KEY is missing")
        self._settings = settings
        self._store = store
        self._clock = clock
        self._algorithm = settings.jwt_algorithm
        secret = settings.jwt_signing_key.get_secret_value()
        self._signing_key: Any = secret.encode() if self._algorithm in _HMAC else secret
        own = (
            self._signing_key
            if self._algorithm in _HMAC
            else _public_from_private(self._algorithm, secret)
        )
        self._keys: dict[str, VerifyKey] = {settings.jwt_kid: VerifyKey(self._algorithm, own)}
        for kid, entry in settings.jwt_verification_keys.items():
            self._keys.setdefault(
                kid,
                VerifyKey(
                    entry.algorithm,
                    _verification_key(entry.algorithm, entry.key.get_secret_value()),
                ),
            )

    # -- issuing ----------------------------------------------------------------------------

    def issue(
        self,
        sub: str,
        role: Role | str,
        *,
        kind: str = "access",
        ttl_s: int | None = None,
        family: str | None = None,
    ) -> str:
        """A signed token for ``sub`` with ``role``."""
        role = role if isinstance(role, Role) else parse_role(role)
        if kind not in {"access", "refresh"}:
            raise ValueError(f"unknown token kind {kind!r}")
        now = int(self._clock())
        default_ttl = (
            self._settings.access_ttl_s if kind == "access" else self._settings.refresh_ttl_s
        )
        claims: dict[str, Any] = {
            "sub": sub,
            "role": role.value,
            "type": kind,
            "iat": now,
            "nbf": now,
            "exp": now + (ttl_s or default_ttl),
            "jti": uuid.uuid4().hex,
            "aud": self._settings.audience,
            "iss": self._settings.issuer,
        }
        if kind == "refresh":
            claims["fam"] = family or uuid.uuid4().hex
        return jwt.encode(
            claims,
            self._signing_key,
            algorithm=self._algorithm,
            headers={"kid": self._settings.jwt_kid},
        )

    def issue_pair(self, sub: str, role: Role | str) -> tuple[str, str]:
        """An access token and a refresh token starting a new family."""
        return self.issue(sub, role), self.issue(sub, role, kind="refresh")

    # -- verifying --------------------------------------------------------------------------

    def decode(self, token: str, *, expected_type: str = "access") -> Claims:
        """Verify signature and every claim (no revocation check); TokenError if refused."""
        if len(token) > self._settings.max_token_bytes:
            raise TokenError("token_too_large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed_token") from None
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise TokenError("unknown_key")
        if header.get("alg") != key.algorithm:
            raise TokenError("algorithm_mismatch")
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_s,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong_issuer") from None
        except jwt.MissingRequiredClaimError as error:
            raise TokenError(f"missing_claim:{error.claim}") from None
        except jwt.PyJWTError:
            raise TokenError("invalid_token") from None
        if payload["type"] != expected_type:
            raise TokenError("wrong_token_type")
        try:
            role = parse_role(str(payload["role"]))
        except ValueError:
            raise TokenError("unknown_role") from None
        return Claims(
            sub=str(payload["sub"]),
            role=role,
            type=str(payload["type"]),
            jti=str(payload["jti"]),
            exp=int(payload["exp"]),
            family=payload.get("fam"),
        )

    async def verify(self, token: str, *, expected_type: str = "access") -> Claims:
        """Verify ``token`` fully, revocation included."""
        claims = self.decode(token, expected_type=expected_type)
        if await self.is_revoked(claims.jti):
            raise TokenError("revoked")
        return claims

    # -- revocation and rotation --------------------------------------------------------------

    def _redis(self) -> Store:
        if self._store is None:
            raise ConfigError("token revocation and refresh rotation need Redis")
        return self._store

    def _key(self, *parts: str) -> str:
        return self._redis().key("security", *parts)

    async def revoke(self, claims: Claims) -> None:
        """Refuse ``claims.jti`` from now until it would have expired."""
        ttl = max(1, claims.exp - int(self._clock()) + self._settings.leeway_s)
        key = self._key("revoked", claims.jti)
        await self._redis().execute(lambda r: r.set(key, b"1", ex=ttl))

    async def is_revoked(self, jti: str) -> bool:
        """True when ``jti`` was revoked."""
        if self._store is None:
            return False
        key = self._key("revoked", jti)
        found: Any = await self._store.execute(lambda r: r.exists(key))
        return bool(found)

    async def refresh(self, refresh_token: str) -> tuple[str, str]:
        """Exchange a refresh token for a new pair; a reused one revokes its whole family."""
        claims = await self.verify(refresh_token, expected_type="refresh")
        family = claims.family or ""
        if not family:
            raise TokenError("invalid_token")
        store = self._redis()
        dead_key = self._key("family-revoked", family)
        used_key = self._key("refresh-used", claims.jti)
        ttl = max(1, claims.exp - int(self._clock()) + self._settings.leeway_s)
        if await store.execute(lambda r: r.exists(dead_key)):
            raise TokenError("revoked")
        first: Any = await store.execute(lambda r: r.set(used_key, b"1", nx=True, ex=ttl))
        if not first:
            family_ttl = self._settings.refresh_ttl_s + self._settings.leeway_s
            await store.execute(lambda r: r.set(dead_key, b"1", ex=family_ttl))
            raise TokenError("refresh_reused")
        access = self.issue(claims.sub, claims.role)
        refresh = self.issue(claims.sub, claims.role, kind="refresh", family=family)
        return access, refresh
