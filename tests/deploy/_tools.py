"""Finding the external tools the deploy tests run (scripts/deploy-tools.sh installs them).

A missing tool skips the test loudly on a developer's machine and fails it under CI=true.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["DEPLOY", "ROOT", "require_module", "require_tool"]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
_HINT = "run `bash scripts/deploy-tools.sh` (make deploy-check does)"


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {what} is not installed; {_HINT}", pytrace=False)
    pytest.skip(f"DEPLOY CHECK SKIPPED: {what} is not installed; {_HINT}")


def require_tool(name: str) -> str:
    """The path of ``name`` on PATH or in the virtualenv's bin (where kubectl may be unpacked)."""
    search = os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        _missing(name)
        raise AssertionError("unreachable")  # pytest.skip and pytest.fail raise
    return found


def require_module(name: str) -> None:
    """Skip (fail under CI) unless the Python module ``name`` can be imported."""
    try:
        importlib.import_module(name)
    except ImportError:
        _missing(f"the Python module {name}")
