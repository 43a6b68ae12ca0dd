"""The health monitor worker: collect, evaluate rules, raise and resolve alerts."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from common.bus.router import Emit
from common.errors import EventGuardError
from common.logging import get_logger
from common.preflight import url_vhost
from common.service import AdminRoute, BaseService, WorkerContext
from schemas.envelope import Envelope, new_event
from schemas.health import AlertRaised, AlertResolved, Heartbeat
from schemas.quarantine import ENTITY_KINDS
from workers.health_monitor import admin
from workers.health_monitor.alerts import AlertBook, Fenced, Notification, Sink, due, inhibited
from workers.health_monitor.collectors import (
    Collector,
    HeartbeatBook,
    collect_all,
    http_target_collector,
    rabbitmq_collector,
    redis_collector,
)
from workers.health_monitor.evaluator import AlertState, Evaluator
from workers.health_monitor.leader import Leadership
from workers.health_monitor.outbox import Outbox, Pending
from workers.health_monitor.rules import Rule, load_rules
from workers.health_monitor.silences import SilenceRequests

__all__ = ["HealthMonitorService"]

_log = get_logger("eventguard.health_monitor")
# What a Redis call raises when Redis is away (the guard's errors, redis-py's, the socket's).
_REDIS_DOWN = (EventGuardError, RedisError, OSError, TimeoutError)


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class HealthMonitorService(BaseService):
    """Turns heartbeats and collected stats into alerts.

    With N replicas every one consumes every heartbeat and evaluates (a hot standby); only the
    lease holder (:mod:`workers.health_monitor.leader`) saves state and notifies."""

    name = "health_monitor"

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        now: Callable[[], float] = time.time,
        rules: list[Rule] | None = None,
        collectors: dict[str, Collector] | None = None,
        sinks: dict[str, Sink] | None = None,
    ) -> None:
        super().__init__(ctx)
        self.settings = ctx.settings.health_monitor
        self.now = now
        self.rules = rules if rules is not None else load_rules(self.settings.rules_file)
        self.rules_by_name = {rule.name: rule for rule in self.rules}
        self.evaluator = Evaluator(
            self.rules,
            interval_s=self.settings.interval_s,
            absent_after_s=self.settings.stale_heartbeat_s,
        )
        self.book = AlertBook(ctx.store)
        self.leadership = Leadership(
            ctx.store,
            holder=f"{ctx.settings.instance}:{uuid.uuid4().hex[:8]}",
            lease_s=self.settings.leader_lease_s,
        )
        self.outbox = Outbox()
        self.heartbeats = HeartbeatBook()
        self._extra_collectors = collectors
        self.collectors: dict[str, Collector] = {}
        self.sinks: dict[str, Sink] = {"events": self._publish, **(sinks or {})}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._lead_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lead_lock = asyncio.Lock()
        self._lock = asyncio.Lock()
        self.router.add(Heartbeat, self.on_heartbeat, broadcast=True)
        SilenceRequests(self.book, now=now, source=self.name).register(self.router)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore saved state, build the collectors, start evaluating."""
        alerts, _ = await self.book.load()
        self.evaluator.restore(alerts)
        self.collectors = self._build_collectors()
        self._task = asyncio.create_task(self._loop(), name="health_monitor.tick")
        self._lead_task = asyncio.create_task(self._lead_loop(), name="health_monitor.lease")

    async def stop(self) -> None:
        """Stop evaluating, hand the lease over, close HTTP sessions."""
        self._stopping = True
        for task in (self._task, self._lead_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.leadership.resign()
        self.ctx.metrics.health_monitor.leader.set(0)
        if self._session is not None:
            await self._session.close()

    def _vhost(self) -> str:
        """The vhost this worker's broker URL names: the one whose queues it watches."""
        url = self.ctx.settings.broker_url
        return url_vhost(url.get_secret_value()) if url is not None else "/"

    def _build_collectors(self) -> dict[str, Collector]:
        s = self.settings
        if s.rabbitmq_api_url or s.ready_targets or s.webhook_url:
            # aiohttp never retries on its own: the guard is the only retry layer.
            self._session = aiohttp.ClientSession(raise_for_status=False)
        if s.webhook_url and self._session is not None:
            self.sinks["webhook"] = self._webhook(s.webhook_url, self._session)
        if self._extra_collectors is not None:
            return dict(self._extra_collectors)
        collectors: dict[str, Collector] = {}
        if s.collect_redis:
            collectors["redis"] = redis_collector(self.ctx.store)
        if self._session is not None:
            if s.rabbitmq_api_url:
                collectors["rabbitmq"] = rabbitmq_collector(
                    s, self.ctx.guards, self._session, vhost=self._vhost()
                )
            for name, url in s.ready_targets.items():
                collectors[name] = http_target_collector(name, url, self.ctx.guards, self._session)
        return collectors

    async def _loop(self) -> None:
        # The first round waits one interval, so heartbeats have arrived by then.
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - one bad round must not stop monitoring
                _log.exception("health.tick_failed")

    async def _lead_loop(self) -> None:
        while not self._stopping:  # a cancel may land inside a guarded Redis call and be lost
            try:
                await self._lead()
            except Exception:  # noqa: BLE001 - one failed renewal must not stop the loop
                _log.exception("health.lease_failed")
            await asyncio.sleep(self.settings.leader_renew_s)

    async def _lead(self) -> None:
        """Take or renew the lease; a replica that just took it adopts the saved state."""
        async with self._lead_lock:
            acquired = await self.leadership.step()
        if acquired:
            async with self._lock:
                alerts, _ = await self.book.load()  # also what the next commit diffs against
                if not self.leadership.continued:  # a takeover: adopt the saved state
                    self.evaluator.alerts.clear()
                    self.evaluator.restore(alerts)
                self.outbox.replace(await self.book.load_outbox())
        self.ctx.metrics.health_monitor.leader.set(1 if self.leadership.leading else 0)

    # -- inputs -------------------------------------------------------------------------------

    async def on_heartbeat(self, event: Envelope[Heartbeat]) -> Emit:
        """Remember the worker's latest vital signs."""
        self.heartbeats.record(event.data, self.now())
        return []

    # -- one round ----------------------------------------------------------------------------

    async def tick(self) -> list[Notification]:
        """Collect and evaluate every rule; the leader then decides the notifications, saves
        state and outbox in one fenced step, and sends what the sinks owe. Returns the
        notifications decided this round (a standby decides none)."""
        if not self.leadership.leading:
            await self._lead()
        async with self._lock:
            now = self.now()
            samples = self.heartbeats.samples(now)
            samples += await collect_all(
                self.collectors,
                timeout_s=self.settings.collector_timeout_s,
                metrics=self.ctx.metrics,
            )
            started = time.perf_counter()
            changes = self.evaluator.evaluate(samples, now)
            self.ctx.metrics.health_monitor.rule_evaluation.observe(time.perf_counter() - started)
            alerts = self.evaluator.alerts
            if not self.leadership.leading:
                self._gauges(())
                return []
            with contextlib.suppress(*_REDIS_DOWN):  # without Redis: the last known silences
                await self.book.refresh(now)
            for fp, who in self.book.acks.items():
                if fp in alerts:
                    alerts[fp].acknowledged_by = who
            notes = self._decide(
                due(
                    changes,
                    alerts,
                    self.rules_by_name,
                    now=now,
                    repeat_interval_s=self.settings.repeat_interval_s,
                ),
                alerts,
                now,
            )
            entries = [Pending.of(note, list(self.sinks), now) for note in notes]
            notes = [_with_id(note, entry.id) for note, entry in zip(notes, entries, strict=True)]
            await self._commit(alerts, entries)
            if self.leadership.leading:
                await self._flush()
            self._gauges(alerts.values())
            return notes

    def _decide(
        self, notes: list[Notification], alerts: Mapping[str, AlertState], now: float
    ) -> list[Notification]:
        """Drop what is silenced or inhibited (counted); stamp the rest as sent now."""
        counter = self.ctx.metrics.health_monitor.notifications
        firing = [
            (a, self.rules_by_name[a.rule])
            for a in alerts.values()
            if a.phase == "firing" and a.rule in self.rules_by_name
        ]
        chosen: list[Notification] = []
        for note in notes:
            if note.kind == "raised" and self.book.silenced(note.alert, now):
                counter.labels("all", "silenced").inc()
            elif note.kind == "raised" and inhibited(note.alert, firing):
                counter.labels("all", "inhibited").inc()
            else:
                note.alert.last_sent = now  # the outbox delivers it from here on
                chosen.append(note)
        return chosen

    async def _commit(self, alerts: Mapping[str, AlertState], entries: list[Pending]) -> None:
        """Save the changed alerts and the new outbox entries, fenced; without Redis, keep the
        entries in memory (nobody else can lead meanwhile)."""
        lease = (self.leadership.lease_key, f"{self.leadership.holder}|{self.leadership.epoch}")
        try:
            await self.book.commit(alerts, lease=lease, outbox=entries)
        except Fenced:
            _log.warning("health.leader_fenced", epoch=self.leadership.epoch)
            self.leadership.epoch = 0
            self.ctx.metrics.health_monitor.leader.set(0)
            return
        except _REDIS_DOWN as error:
            _log.warning("health.state_unsaved", error=repr(error)[:200], owed=len(entries))
            self.outbox.add(entries, local=True)
            return
        self.outbox.add(entries, local=False)

    async def _flush(self) -> None:
        """Send what each sink owes; cross off what was accepted, in Redis too."""
        changed, done = await self.outbox.flush(
            self.sinks,
            self.rules_by_name,
            timeout_s=self.settings.sink_timeout_s,
            metrics=self.ctx.metrics,
        )
        self.ctx.metrics.health_monitor.outbox.set(len(self.outbox.entries))
        if not (changed or done):
            return
        lease = (self.leadership.lease_key, f"{self.leadership.holder}|{self.leadership.epoch}")
        try:
            await self.book.commit(None, lease=lease, outbox=changed, outbox_done=done)
        except Fenced:
            self.leadership.epoch = 0
        except _REDIS_DOWN as error:  # a later leader may re-send these: same ids, dropped
            _log.warning("health.outbox_unsaved", error=repr(error)[:200])

    def _gauges(self, alerts: Any) -> None:
        counts = {"warning": 0, "critical": 0}
        for alert in alerts:
            if alert.phase == "firing" and alert.severity in counts:
                counts[alert.severity] += 1
        for severity, count in counts.items():
            self.ctx.metrics.health_monitor.alerts_active.labels(severity).set(count)

    # -- sinks ---------------------------------------------------------------------------------

    async def _publish(self, notes: Sequence[Notification]) -> None:
        for note in notes:
            await self.ctx.publisher.publish(self.event_for(note))

    def event_for(self, note: Notification) -> Envelope[Any]:
        """The health.alert.* event of a notification."""
        alert, rule = note.alert, note.rule
        labels = {k: v[:200] for k, v in list(alert.labels.items())[:50]}
        common: dict[str, Any] = {
            "fingerprint": alert.fingerprint,
            "rule": rule.name,
            "severity": alert.severity or "warning",
            "labels": {**labels, **rule.severity_labels},
            "summary": rule.summary,
            # Only a kind quarantine knows names an entity (labels come from any heartbeat).
            "entity_kind": kind if (kind := labels.get("entity_kind")) in ENTITY_KINDS else None,
            "entity_id": labels.get("entity_id"),
            "quarantine": rule.quarantine and alert.severity == "critical",
        }
        if note.kind == "raised":
            data: AlertRaised | AlertResolved = AlertRaised(
                **common,
                value=alert.value,
                started_at=_when(alert.since),
                runbook_url=rule.runbook_url,
            )
            return new_event(
                "health.alert.raised", data, source=self.name, event_id=note.id or None
            )
        return new_event(
            "health.alert.resolved",
            AlertResolved(**common, resolved_at=_when(self.now())),
            source=self.name,
            event_id=note.id or None,
        )

    def _webhook(self, url: str, session: aiohttp.ClientSession) -> Sink:
        guard = self.ctx.guards.guard("http:alertmanager-webhook")

        async def send(notes: Sequence[Notification]) -> None:
            groups: dict[str, list[Notification]] = {}
            for note in notes:
                groups.setdefault(note.rule.name, []).append(note)
            for rule_name, group in groups.items():
                body = _alertmanager_payload(rule_name, group, self.now())

                async def post(body: Mapping[str, Any] = body) -> None:
                    async with session.post(url, json=body) as response:
                        response.raise_for_status()

                await guard.call(post)

        return send

    # -- admin ---------------------------------------------------------------------------------

    def admin_routes(self) -> list[AdminRoute]:
        """Alerts, silences and rules under /admin/health/."""
        return admin.routes(self)


def _with_id(note: Notification, note_id: str) -> Notification:
    """``note`` with its outbox id."""
    return Notification(note.kind, note.alert, note.rule, note_id)


def _alertmanager_payload(rule: str, notes: Sequence[Notification], now: float) -> dict[str, Any]:
    resolved = all(n.kind == "resolved" for n in notes)
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{rule}"}}',
        "status": "resolved" if resolved else "firing",
        "receiver": "eventguard",
        "groupLabels": {"alertname": rule},
        "commonLabels": {"alertname": rule},
        "alerts": [
            {
                "status": "resolved" if n.kind == "resolved" else "firing",
                "labels": {
                    **n.alert.labels,
                    "alertname": rule,
                    "severity": n.alert.severity or "warning",
                },
                "annotations": {
                    "summary": n.rule.summary,
                    **({"runbook_url": n.rule.runbook_url} if n.rule.runbook_url else {}),
                },
                "startsAt": _when(n.alert.since).isoformat(),
                "endsAt": _when(now).isoformat() if n.kind == "resolved" else "",
                "fingerprint": n.alert.fingerprint,
            }
            for n in notes
        ],
    }
