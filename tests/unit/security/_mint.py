"""Keys and tokens minted at run time for the security tests (nothing secret is committed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import fakeredis
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from common.config import SecuritySettings
from common.security.tokens import TokenService
from common.store import Store

NOW = 1_800_000_000.0
REQUIRED = ["sub", "role", "type", "iat", "nbf", "exp", "jti", "aud", "iss"]


def hmac_secret() -> str:
    """A fresh HS256 secret (48 random bytes, URL-safe)."""
    return secrets.token_urlsafe(48)


def settings(**overrides: Any) -> SecuritySettings:
    """HS256 security settings with a fresh key, kid ``k1``."""
    values: dict[str, Any] = {"jwt_signing_key": hmac_secret(), "jwt_kid": "k1", **overrides}
    return SecuritySettings(**values)


def store(prefix: str = "t:") -> Store:
    """A Store over a private fakeredis."""
    return Store(fakeredis.FakeAsyncRedis(), prefix=prefix)


def service(
    config: SecuritySettings | None = None, *, now: float = NOW, redis: Store | None = None
) -> TokenService:
    """A TokenService on fakeredis with a fixed clock."""
    return TokenService(config or settings(), store=redis or store(), now=lambda: now)


def private_pem(key: PrivateKeyTypes) -> str:
    """``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: PrivateKeyTypes) -> str:
    """The public half of ``key`` as PEM."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh EC key (P-256 unless told)."""
    return ec.generate_private_key(curve or ec.SECP256R1())


def ed_key() -> ed25519.Ed25519PrivateKey:
    """A fresh Ed25519 key."""
    return ed25519.Ed25519PrivateKey.generate()


def claims(now: float = NOW, /, **overrides: Any) -> dict[str, Any]:
    """A complete, valid claim set at ``now``; ``None`` overrides remove a claim."""
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "operator",
        "type": "access",
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now) + 600,
        "jti": secrets.token_hex(8),
        "aud": "eventguard",
        "iss": "eventguard",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def forge(payload: dict[str, Any], key: bytes | str, alg: str = "HS256", kid: str = "k1") -> str:
    """A token signed by PyJWT with ``key`` (for claims the service would never issue)."""
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token assembled by hand: HMAC-SHA256 over it with ``key``, or no signature."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def real_now() -> float:
    """Wall-clock seconds (for tests that go through the ops server's own clock)."""
    return time.time()
