"""Suite-wide hooks: a loud summary line when integration tests were skipped."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """Print one loud line naming why integration tests did not run."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "integration" in getattr(report, "keywords", {})
    ]
    if not skipped:
        return
    reasons = sorted({_reason(report) for report in skipped})
    terminalreporter.write_sep(
        "!",
        f"{len(skipped)} INTEGRATION TESTS SKIPPED: {'; '.join(reasons)}",
        red=True,
        bold=True,
    )


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ").removeprefix("INTEGRATION SKIPPED: ")
    return str(longrepr)
