"""``eventguard quarantine list|show|release|discard``.

``list`` and ``show`` read Redis only. ``release`` and ``discard`` run the same exactly-once
steps as the worker (:class:`~workers.quarantine.release.Releaser`): Redis for the state,
the broker to re-publish and to announce the change. Having the broker and Redis credentials
is what makes the caller an operator here, so the record names that verified identity (the
AMQP user) beside the reviewer ``--by`` states: ``alice (cli as operator)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from pydantic import SecretStr

from common.bus.amqp import AmqpBroker
from common.bus.publisher import Publisher
from common.clitools import iso_time, print_table, progress_bar
from common.config import Settings
from common.errors import ConfigError
from common.metrics import Metrics
from common.store import Store, connect_redis
from workers.quarantine.admin import public
from workers.quarantine.keys import ANY
from workers.quarantine.records import REASON_CODES, STATUSES
from workers.quarantine.release import Outcome, Releaser
from workers.quarantine.repository import Repository

__all__ = ["add_commands"]

_KINDS = ("message", "ai_model", "exchange_source", "producer", "strategy", "event_type")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``quarantine`` command group."""
    group = subparsers.add_parser("quarantine", help="dead letters and blocked entities")
    sub = group.add_subparsers(dest="quarantine_command", required=True)

    listing = sub.add_parser("list", help="records, newest first")
    listing.add_argument("--status", choices=STATUSES, default=ANY, help="only this status")
    listing.add_argument("--kind", choices=_KINDS, default=ANY, help="only this kind")
    listing.add_argument(
        "--reason", choices=sorted(REASON_CODES), default=ANY, help="only this reason"
    )
    listing.add_argument("--limit", type=int, default=20, help="records per page")
    listing.add_argument("--offset", type=int, default=0, help="records to skip")
    listing.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    listing.set_defaults(func=_list)

    show = sub.add_parser("show", help="one record with its body, headers and history")
    show.add_argument("record_id", help="the record's id (`quarantine list`)")
    show.set_defaults(func=_show)

    for name, func, text in (
        ("release", _release, "re-publish dead messages (or unblock entities), exactly once"),
        ("discard", _discard, "never release these records"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "record_id", nargs="+", help="the records' ids (`quarantine list`); several: a group"
        )
        cmd.add_argument("--by", required=True, help="the reviewer's name, kept on the record")
        cmd.add_argument("--note", default="", help="a note kept on the record")
        cmd.set_defaults(func=func)


def _secret(value: SecretStr | None, variable: str) -> str:
    """The connection setting's value, or a ConfigError naming the variable.

    These commands need only Redis (and the broker to release or discard), not the signing
    key a running worker needs, so they check just what they use.
    """
    if value is None:
        raise ConfigError(f"refusing to run: {variable} is missing")
    return value.get_secret_value()


@contextlib.asynccontextmanager
async def _repository(settings: Settings) -> AsyncIterator[Repository]:
    url = _secret(settings.redis_url, "EVENTGUARD_REDIS_URL")
    store = Store(connect_redis(url), prefix=settings.redis_key_prefix)
    try:
        yield Repository(store)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _releaser(settings: Settings) -> AsyncIterator[tuple[Releaser, Publisher]]:
    _secret(settings.broker_url, "EVENTGUARD_BROKER_URL")  # fail before touching Redis
    async with _repository(settings) as repo:
        metrics = Metrics()
        broker = AmqpBroker(
            _secret(settings.broker_url, "EVENTGUARD_BROKER_URL"),
            metrics=metrics,
            name="eventguard-quarantine-cli",
        )
        await broker.start()
        try:
            publisher = Publisher(
                broker,
                worker="quarantine",
                user_id=settings.broker_user,
                metrics=metrics,
                exchange=settings.exchange,
            )
            releaser = Releaser(
                repo, broker=broker, user_id=settings.broker_user, metrics=metrics, now=time.time
            )
            yield releaser, publisher
        finally:
            await broker.close()


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with _repository(settings) as repo:
        total, rows = await repo.search(
            status=args.status,
            kind=args.kind,
            reason=args.reason,
            offset=max(0, args.offset),
            limit=min(max(1, args.limit), settings.quarantine.max_page),
        )
    if args.json:
        print(json.dumps({"total": total, "records": [_typed(row) for row in rows]}))
        return 0
    table = [
        {
            "id": row["id"],
            "created": iso_time(row["created_at"]),
            "status": row["status"],
            "kind": row["kind"],
            "reason": row["reason"],
            "target": row["entity_id"] if row["kind"] != "message" else row["routing_key"],
        }
        for row in rows
    ]
    print(f"{total} record(s); showing {len(rows)} from {args.offset}")
    print_table(table, ["id", "created", "status", "kind", "reason", "target"])
    return 0


async def _show(args: argparse.Namespace, settings: Settings) -> int:
    async with _repository(settings) as repo:
        record = await repo.get(args.record_id)
    if record is None:
        print(f"eventguard: no quarantine record {args.record_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(_typed(public(record)), indent=2, default=str))
    return 0


_COUNTS = ("attempts", "size", "body_size", "releases", "count")


def _typed(record: dict[str, Any]) -> dict[str, Any]:
    """A record as people read it: times (``*_at``, stored as epoch text) in ISO 8601 UTC,
    counts as numbers."""
    out = dict(record)
    for name, value in record.items():
        if name.endswith("_at") and name != "dead_at":
            out[name] = iso_time(value) if value not in {None, ""} else None
        elif name in _COUNTS and isinstance(value, str) and value.isdigit():
            out[name] = int(value)
    return out


async def _settle(record_id: str, outcome: Outcome, publisher: Publisher) -> int:
    await publisher.publish(outcome.event)
    if outcome.changed:
        print(json.dumps({"status": outcome.status, **outcome.event.data.model_dump()}))
        return 0
    refusal = outcome.event.data
    print(
        f"eventguard: {record_id}: nothing changed: {refusal.reason} ({refusal.detail})",
        file=sys.stderr,
    )
    return 1


def _by(args: argparse.Namespace, settings: Settings) -> str:
    """The stated reviewer and the identity the broker verified."""
    return f"{args.by[:100]} (cli as {settings.broker_user})"


async def _release(args: argparse.Namespace, settings: Settings) -> int:
    return await _each(args, settings, "release")


async def _discard(args: argparse.Namespace, settings: Settings) -> int:
    return await _each(args, settings, "discard")


async def _each(args: argparse.Namespace, settings: Settings, action: str) -> int:
    """Release or discard every record named; 0 only when each one changed."""
    ids: list[str] = list(dict.fromkeys(args.record_id))
    failed = 0
    async with _releaser(settings) as (releaser, publisher):
        step = releaser.release if action == "release" else releaser.discard
        with progress_bar(action, len(ids)) if len(ids) > 1 else _no_bar() as advance:
            for record_id in ids:
                outcome = await step(record_id, by=_by(args, settings), note=args.note)
                failed += await _settle(record_id, outcome, publisher)
                advance(1)
    return 1 if failed else 0


@contextlib.contextmanager
def _no_bar() -> Iterator[Callable[[int], None]]:
    yield lambda _n: None
