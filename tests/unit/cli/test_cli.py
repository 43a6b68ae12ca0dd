"""The ``eventguard`` command line as a user meets it (finding 8 of issue 19): help on every
argument with its default, --version, one duration syntax, non-zero exits on unknown names,
quiet logs unless -v, tables with a header."""

from __future__ import annotations

import argparse
import io
import json
import logging

import pytest

from common.clitools import HelpFormatter, iso_time, parse_duration, print_table
from common.config import Settings
from eventguard import cli


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command tree with its command path."""
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def test_every_argument_of_every_command_has_help() -> None:
    """No argument anywhere in the command tree is left without a help text."""
    missing = [
        f"{prog}: {action.dest}"
        for prog, parser in _parsers(cli._parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []
    assert all(parser.format_help() for _, parser in _parsers(cli._parser()))


def test_help_shows_defaults_and_no_rst_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """Top-level help has no RST backticks; a command's help shows its defaults."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top
    with pytest.raises(SystemExit):
        cli.main(["alerts", "silence", "--help"])
    assert "(default: 1h)" in capsys.readouterr().out
    assert all(
        isinstance(p.formatter_class(prog="x"), HelpFormatter) for _, p in _parsers(cli._parser())
    )


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the program's version and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("eventguard 0.")


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("2h", 7200), ("30d", 2_592_000)])
def test_one_duration_syntax_everywhere(text: str, seconds: int) -> None:
    """alerts silence --duration, token issue --ttl and publish --wait take 10m, 2h, 30d."""
    parser = cli._parser()
    assert (
        parser.parse_args(["alerts", "silence", "a=b", "--by", "me", "--duration", text]).duration
        == seconds
    )
    assert (
        parser.parse_args(["token", "issue", "--sub", "s", "--role", "operator", "--ttl", text]).ttl
        == seconds
    )
    assert (
        parser.parse_args(["publish", "health.heartbeat", "--data", "{}", "--wait", text]).wait
        == seconds
    )
    assert parse_duration(text) == seconds


def test_ai_enable_of_an_unknown_model_exits_non_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ai enable nosuch-model` names the known models and exits 2, touching nothing."""
    monkeypatch.delenv("EVENTGUARD_REDIS_URL", raising=False)
    assert cli.main(["ai", "enable", "nosuch-model"]) == 2
    assert "unknown model 'nosuch-model'" in capsys.readouterr().err


def test_logs_are_warning_and_above_unless_verbose() -> None:
    """Tools log WARNING+; run and demo keep EVENTGUARD_LOG_LEVEL; -v and -vv raise it."""
    settings = Settings(log_level="INFO")
    parser = cli._parser()
    assert cli._log_level(parser.parse_args(["workers"]), settings) == "WARNING"
    assert cli._log_level(parser.parse_args(["-v", "workers"]), settings) == "INFO"
    assert cli._log_level(parser.parse_args(["-vv", "workers"]), settings) == "DEBUG"
    assert cli._log_level(parser.parse_args(["run", "quarantine"]), settings) == "INFO"
    assert logging.getLevelName("WARNING") == logging.WARNING


def test_tables_have_a_header_and_iso_times() -> None:
    """A listing prints upper-case headers, then aligned rows; epochs read as ISO 8601 UTC."""
    out = io.StringIO()
    print_table([{"id": "r1", "created": iso_time("1796160301.37")}], ["id", "created"], out=out)
    header, row = out.getvalue().splitlines()
    assert header.split() == ["ID", "CREATED"]
    assert row.split() == ["r1", "2026-12-01T21:25:01Z"]
    assert iso_time(None) == "-"


def test_workers_lists_a_table_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`workers` prints a table with a header; --json an array of objects."""
    assert cli.main(["workers"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["WORKER", "CONSUMES"]
    assert cli.main(["workers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert "quarantine.requested" in {r["worker"]: r["consumes"] for r in rows}["quarantine"]
