"""What every ``eventguard`` command shares: one duration syntax, help that shows defaults,
ISO times, human tables, a ``--json`` switch for scripts and progress bars (rich, on stderr,
only on a terminal) for the long commands.

Worker command groups (``workers/*/cli.py``) and the top-level CLI (``eventguard/cli.py``) use
these so that ``--ttl 15m`` and ``--duration 15m`` mean the same thing everywhere, and every
listing reads the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

VERSION = "0.1.0"  # the distribution's (pyproject.toml), shown by --version and in exports
TOOL_START_S = 15.0  # a one-shot command gives the broker this long to accept the login

__all__ = [
    "TOOL_START_S",
    "VERSION",
    "HelpFormatter",
    "add_json_flag",
    "iso_time",
    "parse_duration",
    "print_rows",
    "print_table",
    "progress_bar",
]

_DURATION = re.compile(r"(?P<n>[1-9][0-9]{0,8})(?P<unit>[smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> int:
    """Seconds in ``900``, ``90s``, ``15m``, ``12h`` or ``30d`` (an argparse ``type``): the one
    duration syntax of every command."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text[:20]!r} (whole seconds, or with a unit: 90s, 15m, 12h, 30d)"
        )
    return int(match["n"]) * _UNIT_S[match["unit"]]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends ``(default: X)`` to every option that has a
    meaningful default (not for required options, flags or ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.required
            or default is None
            or default is False
            or (isinstance(default, str) and default in {"", argparse.SUPPRESS})
            or isinstance(
                action, argparse._HelpAction | argparse._VersionAction | argparse._CountAction
            )
        ):
            return text
        if isinstance(default, list | tuple):
            shown = " ".join(str(item) for item in default) or "none"
            return f"{text} (default: {shown})"
        return f"{text} (default: %(default)s)"


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output instead of a table."""
    parser.add_argument(
        "--json", action="store_true", help="print JSON (for scripts) instead of a table"
    )


def iso_time(value: float | str | None) -> str:
    """An epoch (number or numeric string) as ``2026-12-02T01:02:03Z``; ``-`` when unknown."""
    if value is None or value == "":
        return "-"
    try:
        stamp = float(value)
    except (TypeError, ValueError):
        return str(value)
    if stamp <= 0:
        return "-"
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    out: TextIO | None = None,
    empty: str = "(none)",
) -> None:
    """A header line and one aligned line per row (``columns`` are the keys, upper-cased as
    headers); ``empty`` when there is no row."""
    stream = out or sys.stdout
    if not rows:
        print(empty, file=stream)
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    header = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    print(header.rstrip(), file=stream)
    for line in cells:
        print(
            "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), file=stream
        )


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    empty: str = "(none)",
) -> None:
    """``rows`` as a JSON array (``as_json``) or as a table of ``columns``."""
    if as_json:
        print(json.dumps(list(rows), default=str))
    else:
        print_table(rows, columns, empty=empty)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` steps on stderr (stdout stays the command's answer); yields
    ``advance(n)``. Nothing is drawn when stderr is not a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda _n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
