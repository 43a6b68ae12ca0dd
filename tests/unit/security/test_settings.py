"""Settings: no secret has a default; `eventguard run` refuses weak or missing ones by name."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from common.config import Settings, require_production
from common.config.sections import SecuritySettings, VerificationKey
from common.errors import ConfigError
from common.security.keys import demo_settings


def _production(**overrides: Any) -> Settings:
    password = secrets.token_hex(8)
    values: dict[str, Any] = {
        "broker_url": f"amqp://eventguard:{password}@rabbit:5672/",
        "redis_url": "redis://redis:6379/0",
        "security": SecuritySettings(jwt_signing_key=secrets.token_urlsafe(48)),
        **overrides,
    }
    return Settings(**values)


def test_secrets_have_no_defaults() -> None:
    """Without the environment, the signing key, broker and Redis URLs are unset."""
    assert SecuritySettings().jwt_signing_key is None
    assert Settings.model_fields["broker_url"].default is None
    assert Settings.model_fields["redis_url"].default is None


def test_complete_production_settings_pass() -> None:
    """A broker URL with a password, a Redis URL and a strong key are enough to start."""
    require_production(_production())


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"broker_url": None}, "EVENTGUARD_BROKER_URL is missing"),
        ({"broker_url": "amqp://eventguard@rabbit/"}, "EVENTGUARD_BROKER_URL has no password"),
        ({"redis_url": None}, "EVENTGUARD_REDIS_URL is missing"),
        ({"security": SecuritySettings()}, "EVENTGUARD_SECURITY__JWT_SIGNING_KEY is missing"),
        (
            {"security": SecuritySettings(jwt_signing_key="   ")},
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY is missing",
        ),
        (
            {"security": SecuritySettings(jwt_signing_key="x" * 31)},
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY is shorter than 32 bytes",
        ),
        (
            {"security": SecuritySettings(jwt_signing_key="x" * 40, jwt_algorithm="HS512")},
            "shorter than 64 bytes",
        ),
    ],
)
def test_run_refuses_to_start_naming_the_variable(overrides: dict[str, Any], named: str) -> None:
    """Each missing or weak secret stops start-up with the variable named."""
    with pytest.raises(ConfigError, match=named):
        require_production(_production(**overrides))


def test_short_verification_key_is_named_by_kid() -> None:
    """A short HMAC key kept for rotation is refused too, naming its kid."""
    short = {"old": VerificationKey(algorithm="HS256", key="y" * 16)}
    security = SecuritySettings(jwt_signing_key="z" * 48, jwt_verification_keys=short)
    with pytest.raises(ConfigError, match="JWT_VERIFICATION_KEYS: key 'old' is shorter"):
        require_production(_production(security=security))


def test_every_problem_is_named_at_once() -> None:
    """All problems are reported together so one restart fixes them all."""
    with pytest.raises(ConfigError) as caught:
        require_production(Settings(broker_url=None, redis_url=None, security=SecuritySettings()))
    for name in ("BROKER_URL", "REDIS_URL", "JWT_SIGNING_KEY"):
        assert name in str(caught.value)


def test_secrets_are_masked_in_repr() -> None:
    """Printing the settings never shows a secret."""
    settings = _production()
    key = settings.security.jwt_signing_key
    assert key is not None
    assert key.get_secret_value() not in repr(settings)


def test_demo_settings_pass_the_key_checks() -> None:
    """The demo's throwaway key is strong enough for production's own checks."""
    require_production(_production(security=demo_settings()))


def test_environment_sets_the_security_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested variables reach the section (EVENTGUARD_SECURITY__...)."""
    key = secrets.token_urlsafe(48)
    monkeypatch.setenv("EVENTGUARD_SECURITY__JWT_SIGNING_KEY", key)
    monkeypatch.setenv("EVENTGUARD_SECURITY__AUDIENCE", "ops")
    security = Settings().security
    assert security.jwt_signing_key is not None
    assert security.jwt_signing_key.get_secret_value() == key
    assert security.audience == "ops"
