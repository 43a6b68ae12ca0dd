"""Signing and verification keys: each has a ``kid`` and one pinned algorithm.

One key signs; several verify (the signing key's own, plus old keys kept during rotation). A
token's ``kid`` header picks the verification key, and that key's algorithm is the only one
accepted for it, so ``alg: none`` or an HMAC token "signed" with a public key never verifies.

Keys are checked when loaded, and a bad one stops start-up with the variable it came from:
HMAC secrets at least as long as their hash (HS256: 32 bytes) and random-looking (no
repeated character or pattern, enough estimated entropy: see :func:`estimated_bits`), RSA at
least 2048 bits, ES256 on P-256, EdDSA on Ed25519, and verification keys public (a private key
there is refused).
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from common.config.sections import SecuritySettings
from common.errors import ConfigError

__all__ = [
    "HMAC_ALGORITHMS",
    "MIN_DISTINCT_BYTES",
    "MIN_ESTIMATED_BITS",
    "MIN_HMAC_BYTES",
    "SIGNING_VARIABLE",
    "VERIFY_VARIABLE",
    "KeyRing",
    "SigningKey",
    "VerifyKey",
    "demo_settings",
    "estimated_bits",
    "generate_key",
    "load_signing_key",
    "load_verify_key",
]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
# RFC 7518 3.2: an HMAC key at least as long as the hash output.
MIN_HMAC_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_MIN_RSA_BITS = 2048
# An HMAC secret must also look random: this many distinct bytes, no repeated pattern, and
# this many bits by a Shannon estimate (48 random URL-safe characters score about 250).
MIN_DISTINCT_BYTES = 10
MIN_ESTIMATED_BITS = 96
SIGNING_VARIABLE = "EVENTGUARD_SECURITY__JWT_SIGNING_KEY"
VERIFY_VARIABLE = "EVENTGUARD_SECURITY__JWT_VERIFICATION_KEYS"


@dataclass(frozen=True)
class SigningKey:
    """The key new tokens are signed with."""

    kid: str
    algorithm: str
    key: Any = field(repr=False)


@dataclass(frozen=True)
class VerifyKey:
    """A key that verifies tokens whose header names ``kid``, with ``algorithm`` only."""

    kid: str
    algorithm: str
    key: Any = field(repr=False)


def estimated_bits(secret: bytes) -> float:
    """A Shannon estimate of the entropy in ``secret``: bits per byte (from the frequencies of
    its own bytes) times its length. Random keys score near their true entropy; repeated or
    low-variety keys score far below it."""
    if not secret:
        return 0.0
    counts = Counter(secret)
    size = len(secret)
    per_byte = -sum(n / size * math.log2(n / size) for n in counts.values())
    return per_byte * size


def _weakness(secret: bytes) -> str | None:
    """Why ``secret`` is too weak to be an HMAC key, or None."""
    if len(set(secret)) < MIN_DISTINCT_BYTES:
        return f"fewer than {MIN_DISTINCT_BYTES} distinct characters"
    if secret in (secret + secret)[1:-1]:  # a shorter string repeated: "abcabcabc..."
        return "a repeated pattern"
    if estimated_bits(secret) < MIN_ESTIMATED_BITS:
        return f"under {MIN_ESTIMATED_BITS} bits of estimated entropy"
    return None


def _check_hmac(algorithm: str, material: str, variable: str) -> bytes:
    secret = material.encode()
    if len(secret) < MIN_HMAC_BYTES[algorithm]:
        raise ConfigError(
            f"{variable} is shorter than {MIN_HMAC_BYTES[algorithm]} bytes ({algorithm})"
        )
    if material.lstrip().startswith("-----BEGIN"):
        raise ConfigError(f"{variable} is a PEM key, not an {algorithm} secret")
    weakness = _weakness(secret)
    if weakness is not None:
        raise ConfigError(
            f"{variable} is too weak for {algorithm} ({weakness}); "
            "make one with `eventguard keys generate`"
        )
    return secret


def generate_key(algorithm: str) -> tuple[str, str | None]:
    """A fresh key for ``algorithm``: (the secret or private PEM, the public PEM or None)."""
    if algorithm in HMAC_ALGORITHMS:
        # 1.5x the hash size in random bytes, URL-safe text (HS256: 48 bytes, 64 characters).
        return secrets.token_urlsafe(MIN_HMAC_BYTES[algorithm] * 3 // 2), None
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def _check_asymmetric(algorithm: str, key: Any, variable: str) -> None:
    if algorithm == "RS256":
        ok = isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS
        need = f"an RSA key of at least {_MIN_RSA_BITS} bits"
    elif algorithm == "ES256":
        ok = isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and (
            key.curve.name == "secp256r1"
        )
        need = "an EC key on P-256"
    elif algorithm == "EdDSA":
        ok = isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)
        need = "an Ed25519 key"
    else:
        raise ConfigError(f"{variable}: unsupported algorithm {algorithm!r}")
    if not ok:
        raise ConfigError(f"{variable} is not {need} ({algorithm})")


def load_signing_key(kid: str, algorithm: str, material: str) -> SigningKey:
    """A checked signing key: an HMAC secret, or a PEM private key (unencrypted)."""
    if algorithm in HMAC_ALGORITHMS:
        return SigningKey(kid, algorithm, _check_hmac(algorithm, material, SIGNING_VARIABLE))
    try:
        private = serialization.load_pem_private_key(material.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{SIGNING_VARIABLE} is not a PEM private key ({algorithm})") from None
    _check_asymmetric(algorithm, private, SIGNING_VARIABLE)
    return SigningKey(kid, algorithm, private)


def load_verify_key(kid: str, algorithm: str, material: str) -> VerifyKey:
    """A checked verification key: an HMAC secret, or a PEM public key."""
    variable = f"{VERIFY_VARIABLE} (kid {kid!r})"
    if algorithm in HMAC_ALGORITHMS:
        return VerifyKey(kid, algorithm, _check_hmac(algorithm, material, variable))
    if "PRIVATE KEY" in material:
        raise ConfigError(f"{variable} holds a private key; give the public key only")
    try:
        public = serialization.load_pem_public_key(material.encode())
    except (ValueError, TypeError):
        raise ConfigError(f"{variable} is not a PEM public key ({algorithm})") from None
    _check_asymmetric(algorithm, public, variable)
    return VerifyKey(kid, algorithm, public)


def _public_of(signing: SigningKey) -> VerifyKey:
    if signing.algorithm in HMAC_ALGORITHMS:
        return VerifyKey(signing.kid, signing.algorithm, signing.key)
    return VerifyKey(signing.kid, signing.algorithm, signing.key.public_key())


class KeyRing:
    """The signing key and the verification keys by ``kid``."""

    def __init__(
        self, signing: SigningKey, verifying: Mapping[str, VerifyKey] | None = None
    ) -> None:
        self.signing = signing
        keys = dict(verifying or {})
        if signing.kid in keys:
            raise ConfigError(f"{VERIFY_VARIABLE} repeats the signing kid {signing.kid!r}")
        keys[signing.kid] = _public_of(signing)
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> KeyRing:
        """The keys configured in ``settings``; ConfigError naming the variable if any is bad."""
        if settings.jwt_signing_key is None:
            raise ConfigError(f"{SIGNING_VARIABLE} is missing")
        signing = load_signing_key(
            settings.jwt_kid, settings.jwt_algorithm, settings.jwt_signing_key.get_secret_value()
        )
        verifying = {
            kid: load_verify_key(kid, entry.algorithm, entry.key.get_secret_value())
            for kid, entry in settings.jwt_verification_keys.items()
        }
        return cls(signing, verifying)

    def verifier(self, kid: str) -> VerifyKey | None:
        """The verification key for ``kid``, if any."""
        return self._keys.get(kid)

    def kids(self) -> frozenset[str]:
        """Every kid that verifies."""
        return frozenset(self._keys)


def demo_settings(*, any_type_producers: frozenset[str] = frozenset()) -> SecuritySettings:
    """Security settings with a random HS256 key generated now: for ``eventguard demo`` and
    tests, never stored and gone when the process ends."""
    return SecuritySettings(
        jwt_signing_key=secrets.token_urlsafe(48),
        jwt_algorithm="HS256",
        jwt_kid=f"demo-{secrets.token_hex(4)}",
        any_type_producers=any_type_producers,
    )
