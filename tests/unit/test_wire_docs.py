"""The documents users read agree with the code: the catalogue and the dead-letter reasons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.bus.headers import DEAD_REASONS
from eventguard.catalogue import BEGIN, END, catalogue_table, replace_block

ROOT = Path(__file__).resolve().parents[2]


def test_readme_catalogue_is_the_generated_one() -> None:
    """The README's table is what the bindings and the producer policy say (else regenerate)."""
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme
    assert END in readme
    assert replace_block(readme, catalogue_table()) == readme


def test_catalogue_states_the_bindings_found_wrong() -> None:
    """Alert resolutions and discards are shown as unbound, not as consumed by workers."""
    rows = {line.split(" | ")[0]: line for line in catalogue_table().splitlines()}
    assert "eventguard.unrouted" in rows["| `health.alert.resolved`"]
    discarded = rows["| `quarantine.entry.discarded`"].split(" | ")[2]  # the consumers column
    assert "reply_to" in discarded  # only the requester of a discard hears of it
    assert not any(f"`{w}`" in discarded for w in ("quarantine", "ai_fallback", "health_monitor"))
    assert "`quarantine`" in rows["| `health.alert.raised`"]


def test_replace_block_needs_both_markers() -> None:
    """A file without the markers is refused rather than silently left stale."""
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers here", "| t |\n")


def test_every_dead_letter_reason_is_documented() -> None:
    """docs/wire-contract.md has one row per reason of the closed set, and no other."""
    text = (ROOT / "docs" / "wire-contract.md").read_text()
    section = text.split("## Dead-letter reasons", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))
    assert documented == DEAD_REASONS
