"""Without the `demo` extra (fakeredis, lupa), as in the containers: `run` and the other
commands still import, and `eventguard demo` says in one line what to install."""

from __future__ import annotations

import subprocess
import sys

# fakeredis made unimportable (a None entry in sys.modules), then the CLI as a user runs it.
_SCRIPT = """
import sys
sys.modules["fakeredis"] = None
from eventguard.cli import main
code = main(sys.argv[1:])
print("testing imported:", "common.testing" in sys.modules)
raise SystemExit(code)
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_without_the_extra_is_one_clear_line() -> None:
    """`eventguard demo` exits 2 with one line naming the missing module and the extra."""
    result = _run("demo", "--once")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "eventguard: the demo needs the demo extra (fakeredis is not installed): "
        "pip install 'eventguard[demo]', or run `make demo`"
    ]


def test_other_commands_never_load_the_demo_parts() -> None:
    """`eventguard workers` works and nothing of the in-memory harness is imported."""
    result = _run("workers", "--json")
    assert result.returncode == 0, result.stderr
    assert "quarantine" in result.stdout
    assert "testing imported: False" in result.stdout
