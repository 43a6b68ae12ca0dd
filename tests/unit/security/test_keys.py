"""Keys: kid and pinned algorithm per key, strength checks, private keys never in verify lists."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from common.config.sections import VerificationKey
from common.errors import ConfigError
from common.security.keys import KeyRing, demo_settings, load_signing_key, load_verify_key
from tests.unit.security import _mint as m


@pytest.mark.parametrize(("algorithm", "size"), [("HS256", 31), ("HS384", 47), ("HS512", 63)])
def test_short_hmac_keys_are_refused(algorithm: str, size: int) -> None:
    """An HMAC key shorter than its hash is refused, naming the variable."""
    with pytest.raises(ConfigError, match="EVENTGUARD_SECURITY__JWT_SIGNING_KEY is shorter"):
        load_signing_key("k1", algorithm, "x" * size)
    assert load_signing_key("k1", algorithm, m.hmac_secret()[: size + 1]).algorithm == algorithm


def test_pem_is_not_an_hmac_secret() -> None:
    """A PEM key given as an HMAC secret is refused (the key-confusion set-up)."""
    with pytest.raises(ConfigError, match="PEM key, not an HS256 secret"):
        load_verify_key("k0", "HS256", m.public_pem(m.rsa_key()))


def test_weak_or_mismatched_asymmetric_keys_are_refused() -> None:
    """RSA under 2048 bits, ES256 off P-256 and a key of the wrong type are refused."""
    with pytest.raises(ConfigError, match="at least 2048 bits"):
        load_signing_key("k1", "RS256", m.private_pem(m.rsa_key(1024)))
    with pytest.raises(ConfigError, match="P-256"):
        load_signing_key("k1", "ES256", m.private_pem(m.ec_key(ec.SECP384R1())))
    with pytest.raises(ConfigError, match="Ed25519"):
        load_signing_key("k1", "EdDSA", m.private_pem(m.ec_key()))
    with pytest.raises(ConfigError, match="not a PEM private key"):
        load_signing_key("k1", "RS256", "not a key at all, though long enough to look like one")


def test_verification_keys_must_be_public() -> None:
    """A private key in the verification list is refused, naming its kid."""
    with pytest.raises(ConfigError, match=r"kid 'old'.*private key"):
        load_verify_key("old", "RS256", m.private_pem(m.rsa_key()))
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_verify_key(
            "old", "ES256", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"
        )


def test_keyring_pins_the_algorithm_per_kid() -> None:
    """Each kid maps to one key with one algorithm; unknown kids map to nothing."""
    old = m.rsa_key()
    extra = {"old": VerificationKey(algorithm="RS256", key=m.public_pem(old))}
    ring = KeyRing.from_settings(m.settings(jwt_kid="new", jwt_verification_keys=extra))
    assert ring.kids() == {"new", "old"}
    new_key, old_key = ring.verifier("new"), ring.verifier("old")
    assert new_key is not None
    assert old_key is not None
    assert (new_key.algorithm, old_key.algorithm) == ("HS256", "RS256")
    assert ring.verifier("other") is None


def test_signing_kid_cannot_be_shadowed() -> None:
    """A verification key reusing the signing kid is a configuration error."""
    clash = {"k1": VerificationKey(algorithm="HS256", key=m.hmac_secret())}
    with pytest.raises(ConfigError, match="repeats the signing kid"):
        KeyRing.from_settings(m.settings(jwt_verification_keys=clash))


def test_key_material_never_shows_in_repr() -> None:
    """Keys and settings print without their secret."""
    secret = m.hmac_secret()
    config = m.settings(jwt_signing_key=secret)
    ring = KeyRing.from_settings(config)
    assert secret not in repr(ring.signing)
    assert secret not in repr(ring.verifier("k1"))
    assert secret not in repr(config)


def test_demo_settings_are_random_and_strong() -> None:
    """Demo settings get a fresh key of at least 32 bytes on every call."""
    first, second = demo_settings(), demo_settings()
    assert first.jwt_signing_key is not None
    assert second.jwt_signing_key is not None
    one, two = first.jwt_signing_key.get_secret_value(), second.jwt_signing_key.get_secret_value()
    assert one != two
    assert len(one.encode()) >= 32
    assert first.jwt_kid != second.jwt_kid
    assert KeyRing.from_settings(first).signing.algorithm == "HS256"


def test_unknown_algorithm_is_refused() -> None:
    """Only the algorithms the settings allow can load."""
    with pytest.raises(ConfigError, match="unsupported algorithm"):
        load_signing_key("k1", "PS256", m.private_pem(m.rsa_key()))
