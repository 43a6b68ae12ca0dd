"""``eventguard opportunity status SCAN_ID``: a scan's progress, from Redis."""

from __future__ import annotations

import argparse
import json

from common.config import Settings
from common.store import Store
from workers.opportunity_discovery.results import read_status

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``eventguard opportunity ...``."""
    group = subparsers.add_parser("opportunity", help="opportunity scans")
    sub = group.add_subparsers(dest="opportunity_command", required=True)
    status = sub.add_parser("status", help="a scan's progress")
    status.add_argument("scan_id")
    status.set_defaults(func=_status)


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    store = Store.from_settings(settings, needed_for="scan progress")
    try:
        status = await read_status(store, args.scan_id)
    finally:
        await store.close()
    if status is None:
        print(f"no scan {args.scan_id}")
        return 1
    print(json.dumps(status, sort_keys=True))
    return 0
