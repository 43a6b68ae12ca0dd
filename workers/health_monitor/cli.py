"""``eventguard alerts``: list alerts and rules, silence and unsilence, from Redis."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from common.config import Settings
from common.durations import parse_duration
from common.store import Store
from workers.health_monitor.alerts import AlertBook
from workers.health_monitor.rules import load_rules

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``eventguard alerts ...``."""
    alerts = subparsers.add_parser("alerts", help="health monitor alerts, silences and rules")
    sub = alerts.add_subparsers(dest="alerts_command", required=True)
    sub.add_parser("list", help="active and pending alerts").set_defaults(func=_list)
    silence = sub.add_parser("silence", help="mute alerts matching labels for a while")
    silence.add_argument("matchers", nargs="+", help="label=value (alertname=RULE matches a rule)")
    silence.add_argument(
        "--duration", type=parse_duration, default=3600, help="how long: 900, 15m, 12h, 30d"
    )
    silence.add_argument("--by", required=True)
    silence.add_argument("--comment", default="")
    silence.set_defaults(func=_silence)
    unsilence = sub.add_parser("unsilence", help="end a silence")
    unsilence.add_argument("silence_id")
    unsilence.set_defaults(func=_unsilence)
    rules = sub.add_parser("rules", help="the rules in force (checks the rule file)")
    rules.set_defaults(func=_rules)


def _book(settings: Settings) -> AlertBook:
    return AlertBook(Store.from_settings(settings, needed_for="the alert book"))


async def _list(_args: argparse.Namespace, settings: Settings) -> int:
    book = _book(settings)
    try:
        alerts, silences = await book.load()
    finally:
        await book.store.close()
    for alert in alerts.values():
        print(alert.to_json())
    for silence in silences.values():
        print(json.dumps({"silence": vars(silence)}))
    return 0


async def _silence(args: argparse.Namespace, settings: Settings) -> int:
    matchers: dict[str, str] = {}
    for item in args.matchers:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"eventguard: matcher {item!r} is not label=value")
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
    print(json.dumps(vars(silence)))
    return 0


async def _unsilence(args: argparse.Namespace, settings: Settings) -> int:
    book = _book(settings)
    try:
        removed = await book.remove_silence(args.silence_id)
    finally:
        await book.store.close()
    print("removed" if removed else f"no silence {args.silence_id}")
    return 0 if removed else 1


async def _rules(_args: argparse.Namespace, settings: Settings) -> int:
    rules: list[Any] = load_rules(settings.health_monitor.rules_file)
    for rule in rules:
        print(json.dumps(rule.model_dump(by_alias=True)))
    return 0
