"""The notification outbox: every state change is sent once to every sink, retried until it is.

The leader decides a notification once (an alert raised, moved, resolved, or repeated), gives
it a stable id and writes it to ``<prefix>health:outbox`` in the same fenced step as the alert
state (:meth:`workers.health_monitor.alerts.AlertBook.commit`), naming the sinks that still owe
it. Each round sends what is pending to each sink; a sink that accepts is crossed off, one that
fails keeps the entry for the next round, so a sink that recovers gets every change it missed,
once. A new leader reads the outbox and carries on. The event sink publishes with the
notification's id as the event id, so a copy re-sent after a crash (sent, then the leader died
before crossing it off) is a duplicate every consumer's idempotency claim drops.

Without Redis the entries live in memory only (:attr:`Outbox.local`): the ``RedisDown`` alert
still reaches the sinks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.logging import get_logger
from common.metrics import Metrics
from workers.health_monitor.evaluator import AlertState
from workers.health_monitor.rules import Rule

__all__ = ["Notification", "Outbox", "Pending", "Sink"]

_log = get_logger("eventguard.health_monitor")


@dataclass(frozen=True)
class Notification:
    """One alert to tell the sinks about; ``id`` is stable across retries and leaders."""

    kind: str  # "raised" or "resolved"
    alert: AlertState
    rule: Rule
    id: str = ""


Sink = Callable[[Sequence[Notification]], Awaitable[None]]


@dataclass
class Pending:
    """A decided notification and the sinks that have not accepted it yet."""

    id: str
    kind: str
    alert: dict[str, Any]
    rule: str
    sinks: list[str]
    at: float
    local: bool = field(default=False, compare=False)

    @staticmethod
    def of(note: Notification, sinks: Sequence[str], now: float) -> Pending:
        """The entry for ``note`` owed to ``sinks``, with an id derived from what changed."""
        alert = note.alert
        text = f"{alert.fingerprint}|{note.kind}|{alert.severity}|{now!r}"
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return Pending(
            digest, note.kind, json.loads(alert.to_json()), note.rule.name, list(sinks), now
        )

    def to_json(self) -> str:
        """Serialise (without the ``local`` flag)."""
        body = {k: v for k, v in vars(self).items() if k != "local"}
        return json.dumps(body, sort_keys=True)

    @staticmethod
    def from_json(text: str | bytes) -> Pending:
        """Deserialise."""
        return Pending(**json.loads(text))

    def note(self, rules: Mapping[str, Rule]) -> Notification | None:
        """The notification to hand to a sink (None when its rule is gone)."""
        rule = rules.get(self.rule)
        if rule is None:
            return None
        return Notification(self.kind, AlertState(**self.alert), rule, self.id)


class Outbox:
    """What is owed to which sink: mirrored in Redis by the leader, in memory without Redis."""

    def __init__(self) -> None:
        self.entries: dict[str, Pending] = {}

    def replace(self, entries: Mapping[str, Pending]) -> None:
        """Adopt the outbox read from Redis (a new leader), keeping memory-only entries."""
        local = {k: v for k, v in self.entries.items() if v.local}
        self.entries = {**entries, **local}

    def add(self, entries: Sequence[Pending], *, local: bool) -> None:
        """Owe ``entries``; ``local`` ones were never written to Redis."""
        for entry in entries:
            entry.local = local
            self.entries[entry.id] = entry

    async def flush(
        self,
        sinks: Mapping[str, Sink],
        rules: Mapping[str, Rule],
        *,
        timeout_s: float,
        metrics: Metrics,
    ) -> tuple[list[Pending], list[str]]:
        """Send what each sink owes, all sinks at once, each under ``timeout_s``. Returns the
        Redis-backed entries that changed and the ids of those now done (to write back)."""
        counter = metrics.health_monitor.notifications
        for entry in self.entries.values():
            entry.sinks = [s for s in entry.sinks if s in sinks]
        owed = {
            name: [e for e in self.entries.values() if name in e.sinks and e.rule in rules]
            for name in sinks
        }

        async def one(name: str, batch: list[Pending]) -> bool:
            notes = [n for e in batch for n in [e.note(rules)] if n is not None]
            try:
                async with asyncio.timeout(timeout_s):
                    await sinks[name](notes)
            except Exception as error:  # noqa: BLE001 - a sink's failure must not reach the others
                counter.labels(name, "failed").inc()
                _log.warning(
                    "alert.sink_failed", sink=name, owed=len(batch), error=repr(error)[:300]
                )
                return False
            counter.labels(name, "sent").inc(len(notes))
            return True

        names = [n for n, batch in owed.items() if batch]
        results = await asyncio.gather(*(one(n, owed[n]) for n in names))
        changed: dict[str, Pending] = {}
        for name, ok in zip(names, results, strict=True):
            if ok:
                for entry in owed[name]:
                    entry.sinks.remove(name)
                    changed[entry.id] = entry
        done = [k for k, e in self.entries.items() if not e.sinks or e.rule not in rules]
        for key in done:
            changed.setdefault(key, self.entries[key])
            del self.entries[key]
        backed = [e for e in changed.values() if not e.local and e.id not in done]
        done_backed = [k for k in done if not changed[k].local]
        return backed, done_backed
