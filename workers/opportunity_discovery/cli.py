"""``eventguard opportunity status|results SCAN_ID``: a scan's progress and its answer, from
Redis.

The scan id is the id of the ``opportunity.scan.requested`` event that asked for the scan (what
``eventguard publish`` prints as ``published``); every answer carries it as ``scan_id``.
"""

from __future__ import annotations

import argparse
import json
import sys

from common.clitools import add_json_flag, iso_time, print_rows
from common.config import Settings
from common.store import Store
from workers.opportunity_discovery.results import read_results, read_status

__all__ = ["add_commands"]

_COUNTS = ("total", "done", "found")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``eventguard opportunity ...``."""
    group = subparsers.add_parser("opportunity", help="opportunity scans")
    sub = group.add_subparsers(dest="opportunity_command", required=True)
    status = sub.add_parser("status", help="a scan's progress")
    status.add_argument("scan_id", help="the id of the opportunity.scan.requested event")
    add_json_flag(status)
    status.set_defaults(func=_status)
    results = sub.add_parser(
        "results",
        help="the opportunities a finished scan found (exit 1: unknown, refused or failed; "
        "3: still running)",
    )
    results.add_argument("scan_id", help="the id of the opportunity.scan.requested event")
    add_json_flag(results)
    results.set_defaults(func=_results)


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings, needed_for="scan progress")
    try:
        raw = await read_status(store, args.scan_id)
    finally:
        await store.close()
    if raw is None:
        print(f"eventguard: no scan {args.scan_id!r} (unknown, or expired)", file=sys.stderr)
        return 1
    status: dict[str, object] = {
        "scan_id": args.scan_id,
        "status": raw.get("status", ""),
        **{k: int(raw.get(k) or 0) for k in _COUNTS},
        "reason": raw.get("reason", ""),
        "updated_at": iso_time(raw.get("updated_at")),
    }
    if args.json:
        print(json.dumps(status, sort_keys=True))
    else:
        print_rows([status], ["scan_id", "status", *_COUNTS, "updated_at", "reason"], as_json=False)
    return 0


async def _results(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings, needed_for="scan results")
    try:
        raw = await read_status(store, args.scan_id)
        found = await read_results(store, args.scan_id)
    finally:
        await store.close()
    if raw is None:
        print(f"eventguard: no scan {args.scan_id!r} (unknown, or expired)", file=sys.stderr)
        return 1
    state = raw.get("status", "")
    if found is None:
        reason = raw.get("reason", "")
        print(
            f"eventguard: scan {args.scan_id} is {state}"
            + (f": {reason}" if reason else "")
            + (" (no results yet)" if state == "running" else ""),
            file=sys.stderr,
        )
        return 1 if state in {"refused", "failed"} else 3
    rows = [
        {
            "strategy": o["strategy"],
            "symbol": o["symbol"],
            "venues": o["venues"],
            "edge_bps": o["edge_bps"],
            "confidence": o["confidence"],
            "expected_value": o["expected_value"],
            "data_time": o["data_time"],
        }
        for o in found
    ]
    if args.json:
        print(json.dumps({"scan_id": args.scan_id, "status": state, "opportunities": found}))
    else:
        print(f"scan {args.scan_id}: {state}, {len(found)} found")
        print_rows(rows, list(rows[0]) if rows else [], as_json=False, empty="none found")
    return 0
