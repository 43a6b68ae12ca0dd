"""Rules: Prometheus' for/keep_firing_for semantics, severity moves, hysteresis, burn rates,
and bad rule files refused with their line."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from common.errors import ConfigError
from workers.health_monitor.evaluator import Evaluator, Sample
from workers.health_monitor.rules import Rule, load_rules, parse_rules


def _rule(**fields: object) -> Rule:
    values: dict[str, object] = {
        "name": "R",
        "metric": "worker_error_rate",
        "comparison": ">",
        "warning": 0.5,
        **fields,
    }
    return Rule.model_validate(values)


def _run(rule: Rule, values: Sequence[float | None], interval: float = 60.0) -> list[str]:
    """Evaluate one series at t = 0, interval, ...; describe the alert after each round."""
    evaluator = Evaluator([rule], interval_s=interval)
    out = []
    for step, value in enumerate(values):
        samples = [] if value is None else [Sample.of(rule.metric, value, worker="w")]
        changes = evaluator.evaluate(samples, step * interval)
        alert = next(iter(evaluator.alerts.values()), None)
        state = f"{alert.phase}:{alert.severity}" if alert else "inactive"
        marks = "".join(f"!{c.kind}" for c in changes)
        out.append(state + marks)
    return out


# Expected rows follow Prometheus: pending at the first true evaluation, firing once
# active_at + for <= now, dropped from pending at the first false one, resolved at the first
# false one unless keep_firing_for holds it.
@pytest.mark.parametrize(
    ("fields", "values", "expected"),
    [
        (
            {"for": "0s"},
            [1, 1, 0],
            ["firing:warning!raised", "firing:warning", "inactive!resolved"],
        ),
        (
            {"for": "2m"},
            [1, 1, 1, 0],
            ["pending:None", "pending:None", "firing:warning!raised", "inactive!resolved"],
        ),
        (
            {"for": "2m"},
            [1, 0, 1, 1, 1],
            ["pending:None", "inactive", "pending:None", "pending:None", "firing:warning!raised"],
        ),
        (
            {"for": "0s", "keep_firing_for": "2m"},
            [1, 0, 0, 0],
            ["firing:warning!raised", "firing:warning", "firing:warning", "inactive!resolved"],
        ),
        (
            {"for": "0s", "keep_firing_for": "2m"},
            [1, 0, 1, 0, 0, 0],
            [
                "firing:warning!raised",
                "firing:warning",
                "firing:warning",
                "firing:warning",
                "firing:warning",
                "inactive!resolved",
            ],
        ),
    ],
)
def test_for_and_keep_firing_for_match_prometheus(
    fields: dict[str, object], values: list[float], expected: list[str]
) -> None:
    """The alert's life over a series matches what Prometheus does for the same series."""
    assert _run(_rule(**fields), values) == expected


def test_one_alert_escalates_and_de_escalates() -> None:
    """Warning becomes critical in place (one fingerprint) and comes back down, then resolves."""
    rule = _rule(warning=0.1, critical=0.5, **{"for": "1m", "keep_firing_for": "1m"})
    states = _run(rule, [0.2, 0.2, 0.9, 0.9, 0.2, 0.2, 0.0, 0.0])
    assert states == [
        "pending:None",
        "firing:warning!raised",
        "firing:warning",
        "firing:critical!raised",
        "firing:critical",
        "firing:warning!raised",
        "firing:warning",
        "inactive!resolved",
    ]


def test_hysteresis_keeps_a_hovering_value_firing() -> None:
    """A value just under the threshold does not resolve while inside the hysteresis band."""
    rule = _rule(warning=0.5, hysteresis=0.2, **{"for": "0s"})
    assert _run(rule, [0.6, 0.45, 0.41, 0.39]) == [
        "firing:warning!raised",
        "firing:warning",
        "firing:warning",
        "inactive!resolved",
    ]


def test_disappearing_series_counts_as_clear() -> None:
    """A series that stops reporting resolves its alert."""
    assert _run(_rule(**{"for": "0s"}), [1, None]) == ["firing:warning!raised", "inactive!resolved"]


def test_multi_window_burn_rate() -> None:
    """Both windows of a pair must burn faster than the factor to fire."""
    rule = Rule.model_validate(
        {
            "name": "Burn",
            "metric": "worker_error_rate",
            "kind": "burn_rate",
            "objective": 0.99,
            "windows": [{"long": "10m", "short": "2m", "factor": 10, "severity": "critical"}],
        }
    )
    # error budget 1%: 15% errors burn at 15x; the short window must agree before it fires.
    states = _run(rule, [0.0] * 8 + [0.15] * 12 + [0.0] * 3)
    fired_at = next(i for i, s in enumerate(states) if "raised" in s)
    assert 8 < fired_at < 20
    assert "resolved" in "".join(states[20:])


def test_history_is_sized_from_interval_and_longest_window() -> None:
    """A 1h window at a 15 s interval keeps 242 points per series, not a fixed minute count."""
    rule = _rule(**{"keep_firing_for": "1h"})
    assert Evaluator([rule], interval_s=15).history.maxlen == 242


def test_rule_objects_are_per_instance() -> None:
    """Two loads of the defaults never share a mutable object."""
    first, second = load_rules(None), load_rules(None)
    assert first == second
    assert all(a is not b and a.labels is not b.labels for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("rules:\n  - name: A\n    metric: nope\n    warning: 1\n", 2, "unknown metric"),
        (
            "rules:\n  - name: A\n    metric: queue_depth\n    warning: 1\n"
            "  - name: B\n    metric: queue_depth\n    comparison: '=>'\n    warning: 1\n",
            5,
            "comparison",
        ),
        (
            "rules:\n  - name: A\n    metric: queue_depth\n    warning: 1\n    for: soon\n",
            2,
            "bad duration",
        ),
        ("rules:\n  - name: A\n    metric: queue_depth\n", 2, "needs warning or critical"),
        ("rules: [\n", 2, "not valid YAML"),
    ],
)
def test_bad_rule_file_is_refused_with_line_and_reason(text: str, line: int, reason: str) -> None:
    """Unknown metric, bad comparison, bad duration, missing thresholds, broken YAML: refused."""
    with pytest.raises(ConfigError, match=reason) as refused:
        parse_rules(text, source="rules.yaml")
    assert f"rules.yaml:{line}:" in str(refused.value)
