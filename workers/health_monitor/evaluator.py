"""Rule evaluation with Prometheus' ``for`` and ``keep_firing_for`` semantics, plus hysteresis.

For each rule and each series that matches its labels there is at most one alert, keyed by
its fingerprint (rule + series labels). At every evaluation, with the series' current value:

* inactive -> pending when the condition holds; pending -> firing once it has held ``for``;
  a pending alert whose condition stops holding is dropped (as Prometheus does);
* while firing, severity moves: up to critical once the critical condition has held ``for``,
  down once the critical condition has been clear (past the hysteresis line) for
  ``keep_firing_for``;
* firing -> resolved once the condition has been clear for ``keep_firing_for``, counted from
  the first clear evaluation (0: at that evaluation), as in Prometheus.

Everything here is synchronous and takes ``now`` as an argument: tests drive it with a fake
clock, and the state is plain data that survives a restart through Redis.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from workers.health_monitor.rules import Rule

__all__ = ["AlertState", "Change", "Evaluator", "History", "Sample", "fingerprint"]

Severity = Literal["warning", "critical"]
_RANK = {None: 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Sample:
    """One series' current value."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @staticmethod
    def of(metric: str, value: float, **labels: str) -> Sample:
        """A sample with sorted labels."""
        return Sample(metric, tuple(sorted(labels.items())), float(value))


def fingerprint(rule: str, labels: Iterable[tuple[str, str]]) -> str:
    """The identity of one alert: the rule and the series' labels."""
    text = json.dumps([rule, sorted(labels)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class AlertState:
    """One alert's state (plain data, JSON round-trips)."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    phase: Literal["pending", "firing"]
    since: float  # pending since, or firing since
    severity: Severity | None  # while firing
    wanted: Severity | None  # the severity the condition asks for now
    wanted_since: float
    value: float
    last_seen: float = 0.0  # last evaluation that had this series
    clear_since: float | None = None  # first clear evaluation while firing
    calm_since: float | None = None  # first evaluation asking for less than the severity
    acknowledged_by: str | None = None
    last_sent: float = 0.0

    def to_json(self) -> str:
        """Serialise."""
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str | bytes) -> AlertState:
        """Deserialise."""
        return AlertState(**json.loads(text))


@dataclass(frozen=True)
class Change:
    """Something to tell the world: an alert fired, changed severity, or resolved."""

    kind: Literal["raised", "resolved"]
    alert: AlertState
    rule: Rule


class History:
    """Recent values per series, sized from the check interval and the longest window."""

    def __init__(self, *, interval_s: float, longest_window_s: float) -> None:
        self.maxlen = max(2, int(longest_window_s / interval_s) + 2)
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], deque[tuple[float, float]]] = {}

    def add(self, sample: Sample, now: float) -> None:
        """Record ``sample`` at ``now``."""
        key = (sample.metric, sample.labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = deque(maxlen=self.maxlen)
        series.append((now, sample.value))

    def average(
        self, metric: str, labels: tuple[tuple[str, str], ...], since: float
    ) -> float | None:
        """Mean of the values recorded at or after ``since``."""
        series = self._series.get((metric, labels))
        if not series:
            return None
        values = [v for t, v in series if t >= since]
        return sum(values) / len(values) if values else None

    def coverage(self, metric: str, labels: tuple[tuple[str, str], ...]) -> float:
        """How far back this series goes."""
        series = self._series.get((metric, labels))
        return series[-1][0] - series[0][0] if series else 0.0


@dataclass
class Evaluator:
    """Evaluates rules over samples and keeps the alert states."""

    rules: list[Rule]
    interval_s: float
    # A series missing for this long counts as clear (a restart, before the first heartbeat,
    # must not resolve everything at once).
    absent_after_s: float = 60.0
    alerts: dict[str, AlertState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        longest = max((r.longest_window_s for r in self.rules), default=0.0)
        self.history = History(interval_s=self.interval_s, longest_window_s=longest)

    def evaluate(self, samples: Iterable[Sample], now: float) -> list[Change]:
        """Fold this round's samples into the alerts; return what changed."""
        by_metric: dict[str, list[Sample]] = {}
        for sample in samples:
            self.history.add(sample, now)
            by_metric.setdefault(sample.metric, []).append(sample)
        changes: list[Change] = []
        seen: set[str] = set()
        for rule in self.rules:
            for sample in by_metric.get(rule.metric, []):
                labels = dict(sample.labels)
                if any(labels.get(k) != v for k, v in rule.labels.items()):
                    continue
                fp = fingerprint(rule.name, sample.labels)
                seen.add(fp)
                if fp in self.alerts:
                    self.alerts[fp].last_seen = now
                wanted = self._wanted(rule, sample, now)
                change = self._step(rule, fp, labels, wanted, sample.value, now)
                if change is not None:
                    changes.append(change)
        # Series that disappeared count as clear.
        rules = {r.name: r for r in self.rules}
        for fp, alert in list(self.alerts.items()):
            owner = rules.get(alert.rule)
            if owner is None:
                del self.alerts[fp]
                continue
            if fp not in seen and now - alert.last_seen >= self.absent_after_s:
                change = self._step(owner, fp, alert.labels, None, alert.value, now)
                if change is not None:
                    changes.append(change)
        return changes

    def _wanted(self, rule: Rule, sample: Sample, now: float) -> Severity | None:
        current = self.alerts.get(fingerprint(rule.name, sample.labels))
        firing = current.severity if current and current.phase == "firing" else None
        if rule.kind == "burn_rate":
            return self._burn(rule, sample, now)
        if rule.critical is not None and rule.breached(
            sample.value, rule.critical, clearing=firing == "critical"
        ):
            return "critical"
        if rule.warning is not None and rule.breached(
            sample.value, rule.warning, clearing=firing is not None
        ):
            return "warning"
        return None

    def _burn(self, rule: Rule, sample: Sample, now: float) -> Severity | None:
        budget = 1 - (rule.objective or 0.999)
        worst: Severity | None = None
        for window in rule.windows:
            long_avg = self.history.average(sample.metric, sample.labels, now - window.long)
            short_avg = self.history.average(sample.metric, sample.labels, now - window.short)
            if long_avg is None or short_avg is None:
                continue
            burning = long_avg / budget >= window.factor and short_avg / budget >= window.factor
            if burning and _RANK[window.severity] > _RANK[worst]:
                worst = window.severity
        return worst

    def _step(  # noqa: PLR0917 - one private step of the state machine
        self,
        rule: Rule,
        fp: str,
        labels: dict[str, str],
        wanted: Severity | None,
        value: float,
        now: float,
    ) -> Change | None:
        alert = self.alerts.get(fp)
        if alert is None:
            if wanted is None:
                return None
            alert = AlertState(
                fingerprint=fp,
                rule=rule.name,
                labels=labels,
                phase="pending",
                since=now,
                severity=None,
                wanted=wanted,
                wanted_since=now,
                value=value,
                last_seen=now,
            )
            self.alerts[fp] = alert
            return self._maybe_fire(rule, alert, now)
        alert.value = value
        if wanted != alert.wanted:
            alert.wanted, alert.wanted_since = wanted, now
        if alert.phase == "pending":
            if wanted is None:
                del self.alerts[fp]  # Prometheus drops a pending alert at once
                return None
            return self._maybe_fire(rule, alert, now)
        return self._firing(rule, alert, now)

    def _maybe_fire(self, rule: Rule, alert: AlertState, now: float) -> Change | None:
        if now - alert.since >= rule.for_s:
            alert.phase, alert.since = "firing", now
            alert.severity = alert.wanted
            return Change("raised", alert, rule)
        return None

    def _firing(self, rule: Rule, alert: AlertState, now: float) -> Change | None:
        wanted = alert.wanted
        if wanted is None:
            # keep_firing_for counts from the first clear evaluation, as in Prometheus.
            alert.clear_since = alert.clear_since if alert.clear_since is not None else now
            if now - alert.clear_since >= rule.keep_firing_for_s:
                del self.alerts[alert.fingerprint]
                return Change("resolved", alert, rule)
            return None
        alert.clear_since = None
        if _RANK[wanted] < _RANK[alert.severity]:
            alert.calm_since = alert.calm_since if alert.calm_since is not None else now
        else:
            alert.calm_since = None
        escalate = _RANK[wanted] > _RANK[alert.severity] and now - alert.wanted_since >= rule.for_s
        calm = alert.calm_since is not None and now - alert.calm_since >= rule.keep_firing_for_s
        if escalate or calm:
            alert.severity = wanted
            alert.calm_since = None
            return Change("raised", alert, rule)
        return None

    def restore(self, alerts: Mapping[str, AlertState]) -> None:
        """Take over alert states saved before a restart."""
        self.alerts.update(alerts)
