"""One duration syntax for every command line: ``900``, ``90s``, ``15m``, ``12h``, ``30d``."""

from __future__ import annotations

import argparse
import re

__all__ = ["parse_duration"]

_DURATION = re.compile(r"(?P<n>[1-9][0-9]{0,8})(?P<unit>[smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> int:
    """Seconds in ``900``, ``90s``, ``15m``, ``12h`` or ``30d`` (an argparse ``type``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text[:20]!r} (e.g. 900, 15m, 12h, 30d)")
    return int(match["n"]) * _UNIT_S[match["unit"]]
