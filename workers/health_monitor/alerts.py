"""Alert delivery in the Alertmanager sense, and the alert state kept in Redis.

* Silences: matchers (label = value) with an expiry; a silenced alert is tracked but not sent.
* Inhibition: one alert per fingerprint already means a critical mutes the warning of the same
  alert; beyond that, a firing alert whose rule ``inhibits`` a dependency (``broker``,
  ``redis``) mutes every alert whose labels say ``depends_on`` that dependency.
* Repeat interval: a firing alert is sent again every ``repeat_interval_s``.
* Grouping: notifications of one evaluation are grouped by rule for the webhook.
* Delivery goes through the outbox (:mod:`workers.health_monitor.outbox`): sinks run
  concurrently, each under its own timeout; a failing sink is retried every round until it
  accepts, and never delays the others.
* State in Redis is written only by the leader, fenced by its epoch, one changed alert at a time
  (``HSET``/``HDEL`` of what changed since the last write, never a delete-and-rewrite).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from common.errors import EventGuardError
from common.logging import get_logger
from common.store import Store
from workers.health_monitor.evaluator import AlertState, Change
from workers.health_monitor.outbox import Notification, Pending, Sink
from workers.health_monitor.rules import Rule

__all__ = ["AlertBook", "Fenced", "Notification", "Silence", "Sink", "due", "inhibited"]

_log = get_logger("eventguard.health_monitor")

# KEYS: lease, alerts, outbox, acks (a deleted alert's acknowledgement goes with it).
# ARGV: the lease value we hold, then four counted lists: alert field/value pairs to set, alert
# fields to delete, outbox pairs to set, outbox ids to delete. Nothing is written unless the
# lease still names us (the fencing token is in its value).
_FENCED_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
for k = 1, 2 do
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HSET', KEYS[k + 1], ARGV[i], ARGV[i + 1]); i = i + 2 end
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HDEL', KEYS[k + 1], ARGV[i])
    if k == 1 then redis.call('HDEL', KEYS[4], ARGV[i]) end
    i = i + 1
  end
end
return 1
"""


class Fenced(EventGuardError):
    """The lease no longer names this replica: another leader took over; nothing was written."""


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
    acks: dict[str, str] = field(default_factory=dict)
    _saved: dict[str, str] = field(default_factory=dict)  # alert JSON as last committed

    def _key(self, name: str) -> str:
        return self.store.key("health", name)

    async def load(self) -> tuple[dict[str, AlertState], dict[str, Silence]]:
        """Everything saved before this process started."""
        alerts_key, silences_key = self._key("alerts"), self._key("silences")
        raw_alerts: Any = await self.store.execute(lambda r: r.hgetall(alerts_key))
        raw_silences: Any = await self.store.execute(lambda r: r.hgetall(silences_key))
        alerts = {k.decode(): AlertState.from_json(v) for k, v in raw_alerts.items()}
        self._saved = {fp: alert.to_json() for fp, alert in alerts.items()}
        self.silences = {k.decode(): Silence(**json.loads(v)) for k, v in raw_silences.items()}
        return alerts, self.silences

    async def load_outbox(self) -> dict[str, Pending]:
        """The notifications still owed to some sink (a new leader carries on with them)."""
        key = self._key("outbox")
        raw: Any = await self.store.execute(lambda r: r.hgetall(key))
        return {k.decode(): Pending.from_json(v) for k, v in raw.items()}

    async def commit(
        self,
        alerts: Mapping[str, AlertState] | None,
        *,
        lease: tuple[str, str],
        outbox: Sequence[Pending] = (),
        outbox_done: Sequence[str] = (),
    ) -> None:
        """Write the alerts that changed since the last commit (``None``: none) and outbox
        changes, in one step fenced by ``lease`` (its key and the value we hold). Raises
        :class:`Fenced` when another replica leads now."""
        lease_key, holder = lease
        changed: dict[str, str] = {}
        gone: list[str] = []
        if alerts is not None:
            current = {fp: alert.to_json() for fp, alert in alerts.items()}
            changed = {fp: v for fp, v in current.items() if self._saved.get(fp) != v}
            gone = [fp for fp in self._saved if fp not in current]
        else:
            current = self._saved
        if not (changed or gone or outbox or outbox_done):
            return
        args: list[Any] = [holder, len(changed)]
        for fp, value in changed.items():
            args += [fp, value]
        args += [len(gone), *gone, len(outbox)]
        for entry in outbox:
            args += [entry.id, entry.to_json()]
        args += [len(outbox_done), *outbox_done]
        keys = [lease_key, self._key("alerts"), self._key("outbox"), self._key("acks")]
        written: Any = await self.store.execute(
            lambda r: r.eval(_FENCED_WRITE, len(keys), *keys, *args)
        )
        if not written:
            raise Fenced("the health_monitor lease is held by another replica")
        self._saved = dict(current)

    async def acknowledge(self, fingerprint: str, by: str) -> None:
        """Record who acknowledged an alert (read back by the leader every round)."""
        key = self._key("acks")
        await self.store.execute(lambda r: r.hset(key, fingerprint, by[:200]))

    async def add_silence(
        self,
        matchers: dict[str, str],
        *,
        until: float,
        by: str,
        comment: str,
        now: float,
        silence_id: str | None = None,
    ) -> Silence:
        """Create a silence (``silence_id``: its id, else a random one)."""
        silence = Silence(silence_id or secrets.token_hex(8), matchers, until, by, comment, now)
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
        """Re-read silences and acknowledgements (the CLI and other replicas add them) and drop
        expired silences."""
        key, acks_key = self._key("silences"), self._key("acks")
        raw: Any = await self.store.execute(lambda r: r.hgetall(key))
        raw_acks: Any = await self.store.execute(lambda r: r.hgetall(acks_key))
        self.silences = {k.decode(): Silence(**json.loads(v)) for k, v in raw.items()}
        self.acks = {k.decode(): v.decode() for k, v in raw_acks.items()}
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
