"""The quarantine CLI's argument parsing and its refusal without connection settings."""

from __future__ import annotations

import argparse

import pytest

from common.config import Settings
from common.errors import ConfigError
from workers.quarantine import cli


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["quarantine", *argv])


def test_commands_parse() -> None:
    """list takes filters; release and discard need the reviewer's name."""
    args = _parse("list", "--status", "quarantined", "--reason", "max_attempts", "--limit", "5")
    assert (args.status, args.reason, args.limit) == ("quarantined", "max_attempts", 5)
    assert _parse("release", "r1", "--by", "alice").by == "alice"
    with pytest.raises(SystemExit):
        _parse("discard", "r1")
    with pytest.raises(SystemExit):
        _parse("list", "--status", "nope")


async def test_missing_settings_are_named() -> None:
    """Without EVENTGUARD_REDIS_URL / EVENTGUARD_BROKER_URL the command names what is missing."""
    settings = Settings(redis_url=None, broker_url=None)
    args = _parse("list")
    with pytest.raises(ConfigError, match="EVENTGUARD_REDIS_URL"):
        await args.func(args, settings)
    args = _parse("release", "r1", "--by", "alice")
    with pytest.raises(ConfigError, match="EVENTGUARD_BROKER_URL"):
        await args.func(args, settings)


def test_a_cli_release_records_the_verified_broker_user() -> None:
    """``--by`` is only stated; the record also names the AMQP user the broker verified."""
    args = _parse("release", "r1", "--by", "alice")
    assert cli._by(args, Settings(broker_user="operator")) == "alice (cli as operator)"
