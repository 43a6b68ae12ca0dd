"""Tokens: every claim required, algorithms pinned, revocation, refresh reuse detection."""

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
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from common.config import SecuritySettings, VerificationKey
from common.security.tokens import TokenError, TokenService
from common.store import Store

NOW = 1_800_000_000.0


def _settings(**overrides: Any) -> SecuritySettings:
    values: dict[str, Any] = {"jwt_signing_key": secrets.token_urlsafe(48), **overrides}
    return SecuritySettings(**values)


def _service(settings: SecuritySettings | None = None, now: float = NOW) -> TokenService:
    store = Store(fakeredis.FakeAsyncRedis(), prefix="t:")
    return TokenService(settings or _settings(), store=store, clock=lambda: now)


def _forge(claims: dict[str, Any], key: bytes | str, alg: str = "HS256", kid: str = "k1") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "sub": "alice",
        "role": "operator",
        "type": "access",
        "iat": int(time.time()),
        "nbf": int(time.time()),
        "exp": int(time.time()) + 600,
        "jti": "j1",
        "aud": "eventguard",
        "iss": "eventguard",
    }
    base.update(overrides)
    return base


async def test_issued_token_verifies_with_every_claim() -> None:
    """A token the service issued verifies and carries subject, role and type."""
    service = _service(now=time.time())
    claims = await service.verify(service.issue("alice", "operator"))
    assert (claims.sub, claims.role.value, claims.type) == ("alice", "operator", "access")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "someone-else"}, "wrong_audience"),
        ({"iss": "mallory"}, "wrong_issuer"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"role": "superuser"}, "unknown_role"),
        ({"type": "refresh"}, "wrong_token_type"),
    ],
)
async def test_bad_claims_are_refused(overrides: dict[str, Any], reason: str) -> None:
    """Wrong audience or issuer, expired, not yet valid, unknown role, wrong type: refused."""
    settings = _settings()
    service = TokenService(settings, store=None)
    key = settings.jwt_signing_key
    assert key is not None
    token = _forge(_claims(**overrides), key.get_secret_value().encode())
    with pytest.raises(TokenError) as refused:
        await service.verify(token)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "missing", ["sub", "role", "type", "iat", "nbf", "exp", "jti", "aud", "iss"]
)
async def test_each_required_claim_is_required(missing: str) -> None:
    """A token lacking any one of the required claims is refused."""
    settings = _settings()
    service = TokenService(settings, store=None)
    key = settings.jwt_signing_key
    assert key is not None
    claims = _claims()
    del claims[missing]
    with pytest.raises(TokenError):
        await service.verify(_forge(claims, key.get_secret_value().encode()))


async def test_alg_none_is_refused() -> None:
    """An unsigned token (alg none) is refused."""
    service = _service()
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode())
    body = base64.urlsafe_b64encode(json.dumps(_claims()).encode())
    token = f"{header.decode().rstrip('=')}.{body.decode().rstrip('=')}."
    with pytest.raises(TokenError) as refused:
        await service.verify(token)
    assert refused.value.reason == "algorithm_mismatch"


async def test_hs256_signed_with_rsa_public_key_is_refused() -> None:
    """The algorithm confusion attack (HS256 keyed with the RS256 public key) fails."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    service = TokenService(
        SecuritySettings(jwt_signing_key=private_pem, jwt_algorithm="RS256"), store=None
    )
    genuine = service.issue("alice", "user")
    assert (await service.verify(genuine)).sub == "alice"
    forged = _forge_hmac_with(public_pem)
    with pytest.raises(TokenError):
        await service.verify(forged)


def _forge_hmac_with(key: bytes) -> str:
    """HS256 over the claims with ``key`` as the secret, built by hand (PyJWT refuses PEM)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(_claims(role="admin")).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


async def test_tampered_payload_is_refused() -> None:
    """Changing the payload after signing breaks the signature."""
    service = _service(now=time.time())
    head, _, signature = service.issue("alice", "user").split(".")
    body = base64.urlsafe_b64encode(json.dumps(_claims(role="admin")).encode()).decode()
    with pytest.raises(TokenError) as refused:
        await service.verify(f"{head}.{body.rstrip('=')}.{signature}")
    assert refused.value.reason == "invalid_token"


async def test_garbage_and_huge_tokens_are_refused() -> None:
    """Garbage and oversized tokens are refused without parsing them further."""
    service = _service()
    for token, reason in [("not-a-token", "malformed_token"), ("a" * 10_000, "token_too_large")]:
        with pytest.raises(TokenError) as refused:
            await service.verify(token)
        assert refused.value.reason == reason


async def test_revoked_jti_is_refused_until_expiry() -> None:
    """A revoked token is refused; revocation is stored by jti."""
    service = _service(now=time.time())
    token = service.issue("alice", "user")
    claims = await service.verify(token)
    await service.revoke(claims)
    with pytest.raises(TokenError) as refused:
        await service.verify(token)
    assert refused.value.reason == "revoked"


async def test_refresh_token_is_not_an_access_token() -> None:
    """A refresh token presented as an access token is refused."""
    service = _service(now=time.time())
    _, refresh = service.issue_pair("alice", "user")
    with pytest.raises(TokenError) as refused:
        await service.verify(refresh)
    assert refused.value.reason == "wrong_token_type"


async def test_refresh_reuse_revokes_the_family() -> None:
    """Using a refresh token twice is refused and kills the rotated successor too."""
    service = _service(now=time.time())
    _, refresh = service.issue_pair("alice", "user")
    _, successor = await service.refresh(refresh)
    with pytest.raises(TokenError) as reused:
        await service.refresh(refresh)
    assert reused.value.reason == "refresh_reused"
    with pytest.raises(TokenError) as family:
        await service.refresh(successor)
    assert family.value.reason == "revoked"


async def test_rotation_verifies_old_kid_and_signs_with_new() -> None:
    """Tokens signed under a retired kid still verify while its key is listed."""
    old_secret = secrets.token_urlsafe(48)
    old = TokenService(_settings(jwt_signing_key=old_secret, jwt_kid="old"), store=None)
    token = old.issue("alice", "user")
    new = TokenService(
        _settings(
            jwt_kid="new",
            jwt_verification_keys={
                "old": VerificationKey(algorithm="HS256", key=old_secret),
            },
        ),
        store=None,
    )
    assert (await new.verify(token)).sub == "alice"
    assert jwt.get_unverified_header(new.issue("bob", "user"))["kid"] == "new"


async def test_refusals_never_log_the_token() -> None:
    """Verification failures leave no token text in the logs."""
    service = _service()
    token = service.issue("alice", "user")
    with capture_logs() as logs, pytest.raises(TokenError):
        await service.verify(token + "x")
    assert token not in json.dumps(logs, default=str)
