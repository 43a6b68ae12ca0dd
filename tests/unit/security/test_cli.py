"""The token and apikey commands: parsing, signing, and refusing bad input."""

from __future__ import annotations

import argparse

import jwt
import pytest

from common.config import Settings
from common.errors import ConfigError
from common.security import cli
from common.security.tokens import TokenService
from tests.unit.security import _mint as m


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="eventguard")
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("900", 900), ("90s", 90), ("15m", 900), ("12h", 43_200), ("30d", 2_592_000)],
)
def test_durations(text: str, seconds: int) -> None:
    """Durations accept plain seconds and s/m/h/d units."""
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1w", "1.5h", "15 m", "9999999999"])
def test_bad_durations_are_refused(text: str) -> None:
    """Zero, negative, fractional, unknown units and absurd lengths are refused."""
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration(text)


async def test_token_issue_prints_a_token_that_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    """`token issue` prints one token with the subject, role and lifetime asked for."""
    settings = Settings(security=m.settings())
    args = _parse(["token", "issue", "--sub", "ops-alice", "--role", "operator", "--ttl", "15m"])
    assert await args.func(args, settings) == 0
    token = capsys.readouterr().out.strip()
    service = TokenService(settings.security, store=m.store())
    claims = await service.verify(token)
    assert (claims.sub, claims.role.value) == ("ops-alice", "operator")
    assert claims.exp - claims.issued_at.timestamp() == 900
    assert jwt.get_unverified_header(token)["kid"] == "k1"


async def test_token_issue_refresh_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """`--refresh` issues a refresh token (refused as an access token)."""
    settings = Settings(security=m.settings())
    args = _parse(["token", "issue", "--sub", "svc", "--role", "service", "--refresh"])
    assert await args.func(args, settings) == 0
    token = capsys.readouterr().out.strip()
    claims = await TokenService(settings.security, store=m.store()).verify(
        token, expected_type="refresh"
    )
    assert claims.type == "refresh"


def test_unknown_or_guest_role_is_refused_by_the_parser() -> None:
    """The CLI offers the known roles only, and no guest tokens or keys."""
    for argv in (
        ["token", "issue", "--sub", "x", "--role", "root"],
        ["token", "issue", "--sub", "x", "--role", "guest"],
        ["apikey", "create", "--name", "x", "--role", "superuser"],
    ):
        with pytest.raises(SystemExit):
            _parse(argv)


async def test_token_issue_without_a_key_names_the_variable() -> None:
    """Without a signing key the command stops, naming the variable."""
    args = _parse(["token", "issue", "--sub", "x", "--role", "admin"])
    with pytest.raises(ConfigError, match="EVENTGUARD_SECURITY__JWT_SIGNING_KEY"):
        await args.func(args, Settings(security=m.settings(jwt_signing_key=None)))


async def test_apikey_commands_need_redis() -> None:
    """apikey commands without EVENTGUARD_REDIS_URL stop, naming it."""
    for argv in (["apikey", "create", "--name", "n", "--role", "service"], ["apikey", "list"]):
        args = _parse(argv)
        with pytest.raises(ConfigError, match="EVENTGUARD_REDIS_URL"):
            await args.func(args, Settings(redis_url=None))
