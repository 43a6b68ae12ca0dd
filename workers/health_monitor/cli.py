"""``eventguard alerts``: list alerts and rules, silence and unsilence, from Redis."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from common.clitools import add_json_flag, iso_time, parse_duration, print_rows
from common.config import Settings
from common.store import Store
from workers.health_monitor.alerts import AlertBook
from workers.health_monitor.rules import load_rules

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``eventguard alerts ...``."""
    alerts = subparsers.add_parser("alerts", help="health monitor alerts, silences and rules")
    sub = alerts.add_subparsers(dest="alerts_command", required=True)
    listing = sub.add_parser("list", help="active and pending alerts, then silences")
    add_json_flag(listing)
    listing.set_defaults(func=_list)
    silence = sub.add_parser("silence", help="mute alerts matching labels for a while")
    silence.add_argument("matchers", nargs="+", help="label=value (alertname=RULE matches a rule)")
    silence.add_argument(
        "--duration", type=parse_duration, default="1h", help="how long: 90s, 15m, 2h, 30d"
    )
    silence.add_argument("--by", required=True, help="who silences (kept on the silence)")
    silence.add_argument("--comment", default="", help="why")
    silence.set_defaults(func=_silence)
    unsilence = sub.add_parser("unsilence", help="end a silence")
    unsilence.add_argument("silence_id", help="the id `alerts silence` printed")
    unsilence.set_defaults(func=_unsilence)
    rules = sub.add_parser("rules", help="the rules in force (checks the rule file)")
    add_json_flag(rules)
    rules.set_defaults(func=_rules)


def _book(settings: Settings) -> AlertBook:
    return AlertBook(Store.from_settings(settings, needed_for="the alert book"))


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    book = _book(settings)
    try:
        alerts, silences = await book.load()
    finally:
        await book.store.close()
    if args.json:
        print(
            json.dumps(
                {
                    "alerts": [asdict(alert) for alert in alerts.values()],
                    "silences": [vars(silence) for silence in silences.values()],
                }
            )
        )
        return 0
    rows = [
        {
            "rule": alert.rule,
            "phase": alert.phase,
            "severity": alert.severity or alert.wanted,
            "since": iso_time(alert.since),
            "value": alert.value,
            "labels": ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items())),
        }
        for alert in alerts.values()
    ]
    print_rows(
        rows,
        ["rule", "phase", "severity", "since", "value", "labels"],
        as_json=False,
        empty="no alerts",
    )
    if silences:
        print()
        print_rows(
            [
                {
                    "silence": s.id,
                    "matchers": ",".join(f"{k}={v}" for k, v in sorted(s.matchers.items())),
                    "expires": iso_time(s.expires_at),
                    "by": s.created_by,
                    "comment": s.comment,
                }
                for s in silences.values()
            ],
            ["silence", "matchers", "expires", "by", "comment"],
            as_json=False,
        )
    return 0


async def _silence(args: argparse.Namespace, settings: Settings) -> int:
    matchers: dict[str, str] = {}
    for item in args.matchers:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"eventguard: matcher {item!r} is not label=value", file=sys.stderr)
            return 2
        matchers[key] = value
    book = _book(settings)
    now = time.time()
    try:
        silence = await book.add_silence(
            matchers, until=now + args.duration, by=args.by, comment=args.comment, now=now
        )
    finally:
        await book.store.close()
    print(json.dumps({**vars(silence), "expires": iso_time(silence.expires_at)}))
    return 0


async def _unsilence(args: argparse.Namespace, settings: Settings) -> int:
    book = _book(settings)
    try:
        removed = await book.remove_silence(args.silence_id)
    finally:
        await book.store.close()
    print("removed" if removed else f"no silence {args.silence_id}")
    return 0 if removed else 1


async def _rules(args: argparse.Namespace, settings: Settings) -> int:
    rules: list[Any] = load_rules(settings.health_monitor.rules_file)
    dumped = [rule.model_dump(by_alias=True, mode="json") for rule in rules]
    print_rows(
        dumped,
        ["name", "kind", "metric", "comparison", "warning", "critical", "for"],
        as_json=args.json,
        empty="no rules",
    )
    return 0
