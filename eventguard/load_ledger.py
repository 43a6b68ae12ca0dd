"""The ledger of ``eventguard load``: every id published and the outcome observed for it.

An id's outcome is one of:

* ``result``: a result event caused by it (``causation_id`` = the id) of one of the types its
  request is answered with, seen on the observer queue;
* ``done``: for types answered by no event (heartbeats, marketplace events, quarantine entries
  fed to ai_fallback), the consuming worker's idempotency key ``<prefix>idem:<worker>:<id>``
  reads ``done`` in Redis;
* ``quarantined``: a ``quarantine.entry.added`` of kind ``message`` whose entity_id is the id,
  with its reason.

Lost = published with no outcome. Duplicated effect = more than one distinct result event id
of the answer types for one id (the same result re-published after a crash keeps its id and is
not a duplicate).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Expect", "Ledger", "Report", "Sent", "TypeFigures"]

Expect = Literal["result", "done", "quarantine"]


@dataclass(frozen=True)
class Sent:
    """What was published under one id and what must come of it."""

    event_type: str  # the routing key (the catalogue type the message pretends to be)
    kind: str  # "valid" or the poison kind
    expect: Expect
    worker: str | None = None  # for ``done``: whose idempotency key marks the effect
    answers: frozenset[str] = frozenset()  # for ``result``: the answer types

    @property
    def label(self) -> str:
        """The latency bucket: the type, or ``poison:<kind>``."""
        return self.event_type if self.kind == "valid" else f"poison:{self.kind}"


@dataclass(frozen=True)
class TypeFigures:
    """Per type (or poison kind): how many, and the end-to-end latency."""

    published: int
    settled: int
    p50_ms: float
    p99_ms: float


@dataclass
class Report:
    """What a run saw."""

    published: int
    copies: int  # messages sent, deliberate duplicates included
    handled: int
    quarantined: int
    lost: list[str]
    duplicated: list[str]
    unexpected_quarantine: list[str]  # valid messages that ended in quarantine
    quarantine_reasons: dict[str, int]
    per_type: dict[str, TypeFigures]

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing done twice."""
        return not self.lost and not self.duplicated

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready data."""
        return {
            "published": self.published,
            "copies": self.copies,
            "handled": self.handled,
            "quarantined": self.quarantined,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "unexpected_quarantine": len(self.unexpected_quarantine),
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
            "per_type": {
                k: {
                    "published": v.published,
                    "settled": v.settled,
                    "p50_ms": round(v.p50_ms, 1),
                    "p99_ms": round(v.p99_ms, 1),
                }
                for k, v in sorted(self.per_type.items())
            },
        }

    def text(self) -> str:
        """The summary lines."""
        lines = [
            f"published   {self.published} ({self.copies - self.published} deliberate duplicates)",
            f"handled     {self.handled}",
            f"quarantined {self.quarantined}"
            + (f" ({_reasons(self.quarantine_reasons)})" if self.quarantine_reasons else ""),
            f"lost        {len(self.lost)}",
            f"duplicated  {len(self.duplicated)}",
        ]
        if self.unexpected_quarantine:
            lines.append(f"valid but quarantined {len(self.unexpected_quarantine)}")
        for label, figures in sorted(self.per_type.items()):
            lines.append(
                f"  {label:<34} {figures.settled:>6}/{figures.published:<6} "
                f"p50 {figures.p50_ms:8.1f} ms  p99 {figures.p99_ms:8.1f} ms"
            )
        return "\n".join(lines)


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))


@dataclass
class Ledger:
    """Ids published and the outcomes observed for them."""

    sent: dict[str, Sent] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    copies: int = 0
    results: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # cause -> (result id, type, time stamped by the worker) as seen, to explain a duplicate
    evidence: dict[str, list[tuple[str, str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    result_types: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    done: set[str] = field(default_factory=set)
    quarantined: dict[str, str] = field(default_factory=dict)  # id -> reason
    outcome_at: dict[str, float] = field(default_factory=dict)

    def record(self, event_id: str, sent: Sent, *, at: float | None = None) -> None:
        """Note one message sent (a second call for the same id is a deliberate duplicate)."""
        self.copies += 1
        if event_id not in self.sent:
            self.sent[event_id] = sent
            self.sent_at[event_id] = time.monotonic() if at is None else at

    def observe(self, body: bytes, *, at: float | None = None) -> None:
        """Fold one event seen on the observer queue into the ledger."""
        try:
            event = json.loads(body)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("id") in self.sent:
            return  # not an event, or one of our own requests
        now = time.monotonic() if at is None else at
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        event_type = event.get("type")
        if event_type == "quarantine.entry.added" and data.get("kind") == "message":
            entity = str(data.get("entity_id"))
            if entity in self.sent:
                self.quarantined.setdefault(entity, str(data.get("reason", "")).split(":", 1)[0])
                self.outcome_at.setdefault(entity, now)
            return
        cause = event.get("causation_id")
        if not isinstance(cause, str):
            return
        sent = self.sent.get(cause)
        if sent is None or sent.expect != "result" or event_type not in sent.answers:
            return
        self.results[cause].add(str(event.get("id")))
        self.evidence[cause].append((str(event.get("id")), str(event_type), str(event.get("time"))))
        self.result_types[cause].add(str(event_type))
        self.outcome_at.setdefault(cause, now)

    def explain(self, event_id: str) -> str:
        """What was seen for ``event_id`` (for a failing assertion)."""
        sent = self.sent.get(event_id)
        return (
            f"{event_id}: {sent}, sent at {self.sent_at.get(event_id)}, "
            f"outcome at {self.outcome_at.get(event_id)}, results {self.evidence.get(event_id)}, "
            f"quarantined {self.quarantined.get(event_id)!r}"
        )

    def mark_done(self, event_id: str, *, at: float | None = None) -> None:
        """The worker's idempotency key for ``event_id`` reads ``done``."""
        self.done.add(event_id)
        self.outcome_at.setdefault(event_id, time.monotonic() if at is None else at)

    def awaiting_done(self) -> list[tuple[str, str]]:
        """(worker, id) of every id whose effect is read from Redis and not seen yet."""
        return [
            (s.worker, i)
            for i, s in self.sent.items()
            if s.expect == "done" and s.worker is not None and i not in self.outcome_at
        ]

    def settled(self) -> bool:
        """Every id has an outcome."""
        return len(self.outcome_at) >= len(self.sent)

    def outcomes_since(self, since: float) -> int:
        """How many outcomes were first seen at or after ``since`` (monotonic seconds)."""
        return sum(1 for at in self.outcome_at.values() if at >= since)

    def first_outcome_after(self, since: float) -> float | None:
        """When the first outcome at or after ``since`` was seen."""
        later = [at for at in self.outcome_at.values() if at >= since]
        return min(later) if later else None

    def report(self) -> Report:
        """The totals."""
        handled = [i for i in self.sent if self.results.get(i) or i in self.done]
        lost = [i for i in self.sent if i not in self.outcome_at]
        duplicated = [i for i, ids in self.results.items() if len(ids) > 1]
        unexpected = [i for i in self.quarantined if self.sent[i].kind == "valid"]
        latencies: dict[str, list[float]] = defaultdict(list)
        counts: Counter[str] = Counter()
        for event_id, sent in self.sent.items():
            counts[sent.label] += 1
            at = self.outcome_at.get(event_id)
            if at is not None:
                latencies[sent.label].append((at - self.sent_at[event_id]) * 1000)
        per_type = {}
        for label, count in counts.items():
            values = sorted(latencies.get(label, []))
            per_type[label] = TypeFigures(
                published=count,
                settled=len(values),
                p50_ms=_percentile(values, 0.5),
                p99_ms=_percentile(values, 0.99),
            )
        return Report(
            published=len(self.sent),
            copies=self.copies,
            handled=len(handled),
            quarantined=len(self.quarantined),
            lost=lost,
            duplicated=duplicated,
            unexpected_quarantine=unexpected,
            quarantine_reasons=dict(Counter(self.quarantined.values())),
            per_type=per_type,
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]
