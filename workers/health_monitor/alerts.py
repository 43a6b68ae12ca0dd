"""Alert delivery in the Alertmanager sense, and the alert state kept in Redis.

* Silences: matchers (label = value) with an expiry; a silenced alert is tracked but not sent.
* Inhibition: one alert per fingerprint already means a critical mutes the warning of the same
  alert; beyond that, a firing alert whose rule ``inhibits`` a dependency (``broker``,
  ``redis``) mutes every alert whose labels say ``depends_on`` that dependency.
* Repeat interval: a firing alert is sent again every ``repeat_interval_s``.
* Grouping: notifications of one evaluation are grouped by rule for the webhook.
* Sinks run concurrently, each under its own timeout: a slow or failing sink never delays the
  others, and its failure is counted and logged, never raised.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from common.logging import get_logger
from common.metrics import Metrics
from common.store import Store
from workers.health_monitor.evaluator import AlertState, Change
from workers.health_monitor.rules import Rule

__all__ = ["AlertBook", "Notification", "Silence", "Sink", "deliver"]

_log = get_logger("eventguard.health_monitor")


@dataclass(frozen=True)
class Notification:
    """One alert to tell the sinks about."""

    kind: str  # "raised" or "resolved"
    alert: AlertState
    rule: Rule


Sink = Callable[[Sequence[Notification]], Awaitable[None]]


@dataclass
class Silence:
    """Mutes alerts whose labels (and rule, as ``alertname``) match every matcher."""

    id: str
    matchers: dict[str, str]
    expires_at: float
    created_by: str
    comment: str = ""
    created_at: float = 0.0

    def matches(self, alert: AlertState) -> bool:
        """True when every matcher matches."""
        labels = {**alert.labels, "alertname": alert.rule}
        return all(labels.get(k) == v for k, v in self.matchers.items())


@dataclass
class AlertBook:
    """Alert states, silences and acknowledgements in Redis (they survive restarts)."""

    store: Store
    silences: dict[str, Silence] = field(default_factory=dict)

    def _key(self, name: str) -> str:
        return self.store.key("health", name)

    async def load(self) -> tuple[dict[str, AlertState], dict[str, Silence]]:
        """Everything saved before this process started."""
        alerts_key, silences_key = self._key("alerts"), self._key("silences")
        raw_alerts: Any = await self.store.execute(lambda r: r.hgetall(alerts_key))
        raw_silences: Any = await self.store.execute(lambda r: r.hgetall(silences_key))
        alerts = {k.decode(): AlertState.from_json(v) for k, v in raw_alerts.items()}
        self.silences = {k.decode(): Silence(**json.loads(v)) for k, v in raw_silences.items()}
        return alerts, self.silences

    async def save(self, alerts: Mapping[str, AlertState]) -> None:
        """Replace the saved alert states with ``alerts`` (one transaction)."""
        key = self._key("alerts")
        values = {fp: alert.to_json() for fp, alert in alerts.items()}

        async def write(r: Any) -> Any:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if values:
                    pipe.hset(key, mapping=values)
                return await pipe.execute()

        await self.store.execute(write)

    async def add_silence(
        self, matchers: dict[str, str], *, until: float, by: str, comment: str, now: float
    ) -> Silence:
        """Create a silence."""
        silence = Silence(secrets.token_hex(8), matchers, until, by, comment, now)
        key = self._key("silences")
        value = json.dumps(asdict(silence))
        await self.store.execute(lambda r: r.hset(key, silence.id, value))
        self.silences[silence.id] = silence
        return silence

    async def remove_silence(self, silence_id: str) -> bool:
        """Expire a silence now."""
        key = self._key("silences")
        removed: Any = await self.store.execute(lambda r: r.hdel(key, silence_id))
        self.silences.pop(silence_id, None)
        return bool(removed)

    async def refresh(self, now: float) -> None:
        """Re-read silences (the CLI and other replicas add them) and drop expired ones."""
        key = self._key("silences")
        raw: Any = await self.store.execute(lambda r: r.hgetall(key))
        self.silences = {k.decode(): Silence(**json.loads(v)) for k, v in raw.items()}
        for silence_id in [s.id for s in self.silences.values() if s.expires_at <= now]:
            await self.remove_silence(silence_id)

    def silenced(self, alert: AlertState, now: float) -> bool:
        """True when a live silence matches ``alert``."""
        return any(s.expires_at > now and s.matches(alert) for s in self.silences.values())


def inhibited(alert: AlertState, firing: Sequence[tuple[AlertState, Rule]]) -> bool:
    """True when another firing alert's rule inhibits what ``alert`` depends on."""
    depends_on = alert.labels.get("depends_on")
    if depends_on is None:
        return False
    return any(
        other.fingerprint != alert.fingerprint and depends_on in rule.inhibits
        for other, rule in firing
    )


def due(
    changes: Sequence[Change],
    alerts: Mapping[str, AlertState],
    rules: Mapping[str, Rule],
    *,
    now: float,
    repeat_interval_s: float,
) -> list[Notification]:
    """This round's changes plus the firing alerts whose repeat interval has passed."""
    out = [Notification(c.kind, c.alert, c.rule) for c in changes]
    changed = {c.alert.fingerprint for c in changes}
    for fp, alert in alerts.items():
        if fp in changed or alert.phase != "firing" or alert.rule not in rules:
            continue
        if now - alert.last_sent >= repeat_interval_s:
            out.append(Notification("raised", alert, rules[alert.rule]))
    return out


async def deliver(
    notifications: Sequence[Notification],
    sinks: Mapping[str, Sink],
    *,
    book: AlertBook,
    firing: Sequence[tuple[AlertState, Rule]],
    now: float,
    timeout_s: float,
    metrics: Metrics,
) -> list[Notification]:
    """Send what is neither silenced nor inhibited to every sink at once; returns what went."""
    counter = metrics.health_monitor.notifications
    send: list[Notification] = []
    for note in notifications:
        if note.kind == "raised" and book.silenced(note.alert, now):
            counter.labels("all", "silenced").inc()
        elif note.kind == "raised" and inhibited(note.alert, firing):
            counter.labels("all", "inhibited").inc()
        else:
            send.append(note)
    if not send:
        return []

    async def one(name: str, sink: Sink) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await sink(send)
        except Exception as error:  # noqa: BLE001 - a sink's failure must not reach the others
            counter.labels(name, "failed").inc()
            _log.warning("alert.sink_failed", sink=name, error=repr(error)[:300])
        else:
            counter.labels(name, "sent").inc(len(send))

    await asyncio.gather(*(one(name, sink) for name, sink in sinks.items()))
    for note in send:
        note.alert.last_sent = now
    return send
