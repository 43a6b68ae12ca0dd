"""Tokens: every claim required, algorithms pinned, revocation, refresh reuse detection."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from structlog.testing import capture_logs

from common.config import VerificationKey
from common.errors import ConfigError
from common.security.tokens import TokenError, TokenService
from tests.unit.security import _mint as m


async def _refused(service: TokenService, token: str, **kwargs: Any) -> str:
    with pytest.raises(TokenError) as caught:
        await service.verify(token, **kwargs)
    assert not token or token not in str(caught.value)
    return caught.value.reason


async def test_issued_token_verifies_with_every_claim() -> None:
    """A token the service issued verifies; subject, role, type and aware UTC times come back."""
    service = m.service()
    claims = await service.verify(service.issue("alice", "operator"))
    assert (claims.sub, claims.role.value, claims.type) == ("alice", "operator", "access")
    assert claims.issued_at.tzinfo is UTC
    assert claims.expires_at.timestamp() == m.NOW + 900
    payload = jwt.decode(service.issue("a", "user"), options={"verify_signature": False})
    assert set(m.REQUIRED) <= set(payload)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "someone-else"}, "wrong_audience"),
        ({"iss": "mallory"}, "wrong_issuer"),
        ({"exp": int(m.NOW) - 3600}, "expired"),
        ({"nbf": int(m.NOW) + 3600}, "not_yet_valid"),
        ({"iat": int(m.NOW) + 3600}, "issued_in_future"),
        ({"exp": "tomorrow"}, "invalid_claim:exp"),
        ({"exp": True}, "invalid_claim:exp"),
        ({"role": "superuser"}, "unknown_role"),
        ({"role": "Admin"}, "unknown_role"),
        ({"type": "refresh"}, "wrong_token_type"),
        ({"type": "id"}, "wrong_token_type"),
        ({"sub": ""}, "invalid_claim:sub"),
        ({"sub": "x" * 300}, "invalid_claim:sub"),
        ({"sub": 42}, "invalid_token"),
    ],
)
async def test_bad_claims_are_refused(overrides: dict[str, Any], reason: str) -> None:
    """Wrong aud or iss, expired, not yet valid, odd times, unknown role, wrong type: refused."""
    config = m.settings()
    key = config.jwt_signing_key
    assert key is not None
    token = m.forge(m.claims(**overrides), key.get_secret_value())
    assert await _refused(m.service(config), token) == reason


@pytest.mark.parametrize("missing", m.REQUIRED)
async def test_each_required_claim_is_required(missing: str) -> None:
    """A token without any one of the nine claims is refused, naming the claim."""
    config = m.settings()
    key = config.jwt_signing_key
    assert key is not None
    token = m.forge(m.claims(**{missing: None}), key.get_secret_value())
    assert await _refused(m.service(config), token) == f"missing_claim:{missing}"


@pytest.mark.parametrize("kid", ["k1", None])
async def test_alg_none_is_refused(kid: str | None) -> None:
    """An unsigned token (alg none), with or without a known kid, is refused."""
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    token = m.hand_made(header, m.claims(role="admin"), None)
    reason = await _refused(m.service(), token)
    assert reason == ("algorithm_mismatch" if kid else "unknown_key")


async def test_hs256_signed_with_rsa_public_key_is_refused() -> None:
    """The classic confusion: HMAC over the token with the RS256 public key as secret."""
    private = m.rsa_key()
    config = m.settings(jwt_signing_key=m.private_pem(private), jwt_algorithm="RS256")
    service = m.service(config)
    public = m.public_pem(private).encode()
    token = m.hand_made({"alg": "HS256", "kid": "k1"}, m.claims(role="admin"), public)
    assert await _refused(service, token) == "algorithm_mismatch"
    assert (await service.verify(service.issue("alice", "admin"))).role.value == "admin"


async def test_tampered_payload_and_header_are_refused() -> None:
    """Changing the role in the payload, or the kid in the header, breaks the token."""
    service = m.service(m.settings(jwt_verification_keys={"k0": _hs("HS256")}))
    header, payload, signature = service.issue("alice", "user").split(".")
    raised = jwt.utils.base64url_encode(
        json.dumps({**m.claims(), "role": "admin"}).encode()
    ).decode()
    assert await _refused(service, f"{header}.{raised}.{signature}") == "bad_signature"
    other = jwt.utils.base64url_encode(b'{"alg":"HS256","kid":"k0"}').decode()
    assert await _refused(service, f"{other}.{payload}.{signature}") == "bad_signature"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "....", "é.é.é", "Bearer x.y.z"],
)
async def test_garbage_tokens_are_refused(token: str) -> None:
    """Anything that is not a compact JWS is refused with a short reason."""
    assert await _refused(m.service(), token) in {
        "malformed_token",
        "unknown_key",
        "invalid_token",
    }


async def test_huge_token_is_refused_before_parsing() -> None:
    """A token past max_token_bytes is refused by size alone."""
    service = m.service(m.settings(max_token_bytes=1024))
    assert await _refused(service, "eyJ" + "A" * 5_000) == "token_too_large"


async def test_unknown_kid_is_refused() -> None:
    """A token signed by a key the service does not hold is refused."""
    other = m.service(m.settings(jwt_kid="elsewhere"))
    assert await _refused(m.service(), other.issue("alice", "admin")) == "unknown_key"


async def test_revoked_jti_is_refused_until_expiry() -> None:
    """A revoked token is refused; the revocation expires with the token (plus leeway)."""
    redis = m.store()
    service = m.service(redis=redis)
    token = service.issue("alice", "operator", ttl_s=120)
    claims = await service.verify(token)
    await service.revoke(claims)
    assert await _refused(service, token) == "revoked"
    ttl = await redis.execute(lambda r: r.ttl(redis.key("security", "revoked", claims.jti)))
    assert 120 <= ttl <= 130
    assert await service.verify(service.issue("alice", "operator"))  # others still pass


async def test_revoke_token_logs_out_access_and_refresh_tokens() -> None:
    """revoke_token accepts either kind and refuses it afterwards."""
    service = m.service()
    access, refresh = service.issue_pair("alice", "user")
    await service.revoke_token(access)
    await service.revoke_token(refresh)
    assert await _refused(service, access) == "revoked"
    assert await _refused(service, refresh, expected_type="refresh") == "revoked"


async def test_refresh_token_is_not_an_access_token_and_back() -> None:
    """A refresh token is refused where an access token is expected, and the reverse."""
    service = m.service()
    access, refresh = service.issue_pair("alice", "user")
    assert await _refused(service, refresh) == "wrong_token_type"
    assert await _refused(service, access, expected_type="refresh") == "wrong_token_type"


async def test_refresh_rotates_within_the_family() -> None:
    """A refresh token buys a new pair once; the new refresh token works in turn."""
    service = m.service()
    _, refresh = service.issue_pair("alice", "user")
    access2, refresh2 = await service.refresh(refresh)
    assert (await service.verify(access2)).sub == "alice"
    first = await service.verify(refresh, expected_type="refresh")
    second = await service.verify(refresh2, expected_type="refresh")
    assert first.family == second.family
    assert (await service.refresh(refresh2))[0]


async def test_refresh_reuse_revokes_the_family() -> None:
    """Using a refresh token twice revokes every token of its family, access tokens included."""
    service = m.service()
    access, refresh = service.issue_pair("alice", "user")
    new_access, new_refresh = await service.refresh(refresh)
    with pytest.raises(TokenError, match="refresh_reused"):
        await service.refresh(refresh)
    for token, kind in [(new_refresh, "refresh"), (refresh, "refresh")]:
        assert await _refused(service, token, expected_type=kind) == "revoked"
    assert await _refused(service, new_access) == "revoked"
    assert await _refused(service, access) == "revoked"
    other_access, _ = service.issue_pair("alice", "user")  # a new login is a new family
    assert await service.verify(other_access)


async def test_refresh_token_without_family_is_refused() -> None:
    """A refresh token must name its family."""
    config = m.settings()
    key = config.jwt_signing_key
    assert key is not None
    token = m.forge(m.claims(type="refresh"), key.get_secret_value())
    assert await _refused(m.service(config), token, expected_type="refresh") == "missing_claim:fam"


def _hs(alg: str) -> VerificationKey:
    return VerificationKey(algorithm=alg, key=m.hmac_secret())


async def test_rotation_verifies_old_kid_and_signs_with_new() -> None:
    """During rotation the old key still verifies, and new tokens carry the new kid."""
    old_secret = m.hmac_secret()
    old = m.service(m.settings(jwt_signing_key=old_secret, jwt_kid="old"))
    old_token = old.issue("alice", "admin")
    keep = {"old": VerificationKey(algorithm="HS256", key=old_secret)}
    new = m.service(m.settings(jwt_kid="new", jwt_verification_keys=keep))
    assert (await new.verify(old_token)).sub == "alice"
    assert jwt.get_unverified_header(new.issue("bob", "user"))["kid"] == "new"
    retired = m.service(m.settings(jwt_kid="new"))
    assert await _refused(retired, old_token) == "unknown_key"


async def test_rs256_key_rotation_with_public_verification_key() -> None:
    """An RS256 token verifies against the old public key kept under its kid."""
    old_private = m.rsa_key()
    old = m.service(m.settings(jwt_signing_key=m.private_pem(old_private), jwt_algorithm="RS256"))
    public = VerificationKey(algorithm="RS256", key=m.public_pem(old_private))
    new = m.service(m.settings(jwt_kid="k2", jwt_verification_keys={"k1": public}))
    assert (await new.verify(old.issue("svc", "service"))).role.value == "service"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
async def test_asymmetric_algorithms_round_trip(algorithm: str) -> None:
    """RS256, ES256 and EdDSA keys sign and verify."""
    makers: dict[str, Callable[[], PrivateKeyTypes]] = {
        "RS256": m.rsa_key,
        "ES256": m.ec_key,
        "EdDSA": m.ed_key,
    }
    key = makers[algorithm]()
    service = m.service(m.settings(jwt_signing_key=m.private_pem(key), jwt_algorithm=algorithm))
    token = service.issue("alice", "user")
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    assert (await service.verify(token)).sub == "alice"


async def test_leeway_tolerates_small_clock_skew_only() -> None:
    """Expiry within the leeway is tolerated; beyond it, refused."""
    config = m.settings(leeway_s=10)
    issuer = m.service(config, now=m.NOW)
    token = issuer.issue("alice", "user", ttl_s=60)
    assert await m.service(config, now=m.NOW + 65).verify(token)
    assert await _refused(m.service(config, now=m.NOW + 71), token) == "expired"
    assert await _refused(m.service(config, now=m.NOW - 11), token) == "not_yet_valid"


def test_issue_refuses_bad_arguments() -> None:
    """Unknown role, empty subject and a non-positive TTL are errors, never defaults."""
    service = m.service()
    with pytest.raises(ValueError, match="unknown role"):
        service.issue("alice", "root")
    with pytest.raises(ValueError, match="sub"):
        service.issue("", "user")
    for ttl in (0, -5):
        with pytest.raises(ValueError, match="ttl"):
            service.issue("alice", "user", ttl_s=ttl)


async def test_verify_without_redis_fails_closed() -> None:
    """A service without a store can issue, but verification needs the revocation store."""
    service = TokenService(m.settings(), store=None, now=lambda: m.NOW)
    with pytest.raises(ConfigError, match="Redis"):
        await service.verify(service.issue("alice", "user"))


def test_missing_signing_key_names_the_variable() -> None:
    """No signing key: the error names EVENTGUARD_SECURITY__JWT_SIGNING_KEY."""
    with pytest.raises(ConfigError, match="EVENTGUARD_SECURITY__JWT_SIGNING_KEY is missing"):
        TokenService(m.settings(jwt_signing_key=None), store=None)


async def test_refusals_never_log_the_token() -> None:
    """Nothing about a refused or accepted token reaches the logs."""
    service = m.service()
    access, refresh = service.issue_pair("alice", "user")
    with capture_logs() as logs:
        for token in (access[:-3] + "abc", refresh, "garbage"):
            with pytest.raises(TokenError):
                await service.verify(token)
        await service.refresh(refresh)
        with pytest.raises(TokenError):
            await service.refresh(refresh)
    assert [entry["event"] for entry in logs] == ["token.refresh_reused"]
    text = json.dumps(logs, default=str)
    assert access not in text
    assert refresh not in text
    assert "eyJ" not in text
