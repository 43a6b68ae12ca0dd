"""Start-up self-checks (findings 2, 3 and 5 of issue 19): each refusal is one line naming the
setting; commands that only publish or declare do not demand a signing key or Redis."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr

from common.config import Settings
from common.config.sections import SecuritySettings
from common.errors import ConfigError
from common.preflight import (
    check_broker_user,
    check_ops_port,
    check_outputs,
    require_broker,
    url_user,
    url_vhost,
    worker_outputs,
)
from common.security.producers import ProducerPolicy
from eventguard import cli

URL = "amqp://quarantine:pw@rabbitmq:5672/prod"  # pragma: allowlist secret
UNREACHABLE = "amqp://quarantine:pw@127.0.0.1:9/x"  # pragma: allowlist secret


def test_url_user_and_vhost() -> None:
    """The user and vhost an AMQP URL names; guest and / when it names none."""
    assert (url_user(URL), url_vhost(URL)) == ("quarantine", "prod")
    assert (url_user("amqp://rabbitmq"), url_vhost("amqp://rabbitmq/")) == ("guest", "/")
    assert url_vhost("amqp://h/%2Fstaging") == "/staging"


def test_broker_user_differing_from_the_url_user_is_refused_in_one_line() -> None:
    """BROKER_USER left at guest with a quarantine URL: the error names both settings."""
    settings = Settings(broker_url=SecretStr(URL))
    with pytest.raises(ConfigError) as error:
        check_broker_user(settings)
    text = str(error.value)
    assert "\n" not in text
    assert "EVENTGUARD_BROKER_USER" in text
    assert "EVENTGUARD_BROKER_URL" in text
    assert "set EVENTGUARD_BROKER_USER=quarantine" in text
    check_broker_user(Settings(broker_url=SecretStr(URL), broker_user="quarantine"))


def test_a_user_that_may_not_publish_the_workers_outputs_is_refused() -> None:
    """Running quarantine as guest would dead-letter every heartbeat: refused, naming types."""
    settings = Settings(broker_url=SecretStr(URL), broker_user="guest")
    with pytest.raises(ConfigError, match=r"may not publish what quarantine publishes"):
        check_outputs(settings, ["quarantine"], ProducerPolicy.from_settings(settings))
    own = Settings(broker_user="quarantine")
    check_outputs(own, ["quarantine"], ProducerPolicy.from_settings(own))
    assert "health.heartbeat" in worker_outputs("quarantine")


def test_granting_the_types_in_producers_satisfies_the_check() -> None:
    """EVENTGUARD_SECURITY__PRODUCERS granting a user every output lets it run the worker."""
    grants = {t: frozenset({"ops"}) for t in worker_outputs("health_monitor")}
    settings = Settings(broker_user="ops", security=SecuritySettings(producers=grants))
    check_outputs(settings, ["health_monitor"], ProducerPolicy.from_settings(settings))


def test_a_taken_ops_port_is_refused_naming_the_setting() -> None:
    """A second worker on the port of the first is refused before it consumes anything."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"EVENTGUARD_OPS_PORT {port} .* --ops-port 0"):
            check_ops_port("127.0.0.1", port)
    check_ops_port("127.0.0.1", 0)


def test_publish_and_topology_need_only_the_broker() -> None:
    """require_broker asks for the URL only: no signing key, no Redis URL."""
    settings = Settings(broker_url=SecretStr(URL), broker_user="quarantine")
    assert settings.redis_url is None
    assert settings.security.jwt_signing_key is None
    assert require_broker(settings) == URL
    with pytest.raises(ConfigError, match="EVENTGUARD_BROKER_URL is missing"):
        require_broker(Settings())


def test_run_refuses_a_taken_port_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eventguard run` with the ops port taken exits 2 with one line, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, value in {
            "EVENTGUARD_BROKER_URL": UNREACHABLE,
            "EVENTGUARD_BROKER_USER": "quarantine",
            "EVENTGUARD_REDIS_URL": "redis://127.0.0.1:9/0",
            "EVENTGUARD_SECURITY__JWT_SIGNING_KEY": "k" * 48,
            "EVENTGUARD_OPS_PORT": str(port),
        }.items():
            monkeypatch.setenv(name, value)
        assert cli.main(["run", "quarantine"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"eventguard: EVENTGUARD_OPS_PORT {port} on 127.0.0.1 is in use")
    assert len(err.splitlines()) == 1


def test_an_unreachable_redis_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`quarantine list` with Redis down exits 1 with one line naming EVENTGUARD_REDIS_URL."""
    monkeypatch.setenv("EVENTGUARD_REDIS_URL", "redis://127.0.0.1:9/0")
    assert cli.main(["quarantine", "list"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("eventguard: Redis: ")
    assert err.endswith("(EVENTGUARD_REDIS_URL)")
    assert len(err.splitlines()) == 1
