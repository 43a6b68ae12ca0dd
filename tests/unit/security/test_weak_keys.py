"""Finding 6: low-entropy HMAC keys are refused naming the variable, `eventguard keys generate`
makes good ones, and a 401 tells the caller only `invalid_token` (the reason is in the log and
the metric label)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from common.config import Settings
from common.config.sections import SecuritySettings
from common.errors import ConfigError
from common.security import cli
from common.security.keys import KeyRing, load_signing_key, load_verify_key
from common.security.tokens import TokenService
from tests.unit.security import _mint as m
from tests.unit.security._ops import Ops, ops_server


@pytest.mark.parametrize(
    "secret",
    [
        "a" * 32,  # one repeated character
        "ab" * 32,
        "0123456789abcdef" * 4,  # a repeated pattern
        "passwordpassword",  # and too short anyway
        "aaaaaaaabbbbbbbbccccccccdddddddd",
    ],
)
def test_low_entropy_hmac_keys_are_refused_naming_the_variable(secret: str) -> None:
    """Keys of one character, few characters or a repeated pattern stop start-up."""
    with pytest.raises(ConfigError, match="EVENTGUARD_SECURITY__JWT_SIGNING_KEY"):
        load_signing_key("k1", "HS256", secret)
    with pytest.raises(ConfigError, match="EVENTGUARD_SECURITY__JWT_VERIFICATION_KEYS"):
        load_verify_key("old", "HS256", secret)


def test_a_weak_key_stops_the_key_ring() -> None:
    """Settings with a weak key cannot build the key ring the ops server needs."""
    with pytest.raises(ConfigError, match="too weak"):
        KeyRing.from_settings(SecuritySettings(jwt_signing_key="x" * 48))


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512", "ES256", "EdDSA"])
async def test_keys_generate_prints_a_key_that_loads(
    algorithm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keys generate` prints a key the loader accepts (and that signs tokens that verify)."""
    parser = argparse.ArgumentParser(prog="eventguard")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["keys", "generate", "--algorithm", algorithm])
    assert await args.func(args, Settings()) == 0
    key = capsys.readouterr().out.strip()
    assert load_signing_key("k1", algorithm, key).algorithm == algorithm
    settings = SecuritySettings(jwt_signing_key=key, jwt_algorithm=algorithm)
    service = TokenService(settings, store=m.store())
    assert (await service.verify(service.issue("alice", "user"))).sub == "alice"


@pytest.fixture
async def ops() -> AsyncIterator[Ops]:
    """An ops server."""
    async with ops_server() as server:
        yield server


async def test_401_says_only_invalid_token(ops: Ops) -> None:
    """Expired, forged and unknown-key tokens get the same answer; the reason is logged and
    counted under its own label."""
    expired = ops.tokens.issue("op", "operator", ttl_s=60)
    ops.clock.now += 3600
    forged = TokenService(m.settings(jwt_kid="other"), store=None).issue("op", "admin")
    answers = []
    with capture_logs() as logs:
        for token in (expired, forged):
            response = await ops.client.get(
                "/admin/workers", headers={"Authorization": f"Bearer {token}"}
            )
            answers.append((response.status, await response.json()))
    assert {status for status, _ in answers} == {401}
    assert answers[0][1] == answers[1][1]
    assert answers[0][1]["detail"] == "invalid_token"
    assert [e["reason"] for e in logs if e["event"] == "access.denied"] == [
        "expired",
        "unknown_key",
    ]
    registry = ops.fleet.metrics.registry
    labels = {"surface": "http", "reason": "unknown_key"}
    assert registry.get_sample_value("eventguard_access_denied_total", labels) == 1.0
