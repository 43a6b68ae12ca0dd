"""Alert rules, loaded from YAML and checked at start-up.

A threshold rule watches one metric (optionally filtered by labels) and compares each series
with a warning and a critical threshold. ``for`` keeps a new alert pending until the condition
has held that long; ``keep_firing_for`` keeps it firing (and so delays the resolve) until the
condition has been clear that long; ``hysteresis`` moves the clearing threshold away from the
firing one so a value hovering at the line does not flap. A burn-rate rule watches an error
ratio against an SLO over pairs of windows (the SRE workbook's multi-window alerts).

A bad rule file is refused with its line number and the reason.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import ConfigError

__all__ = ["METRICS", "BurnWindow", "Rule", "load_rules", "parse_rules"]

# Every metric a rule may name, with where it comes from.
METRICS: Mapping[str, str] = {
    "worker_error_rate": "heartbeat",
    "worker_messages_per_s": "heartbeat",
    "worker_latency_p99_s": "heartbeat",
    "worker_in_flight": "heartbeat",
    "worker_consumers": "heartbeat",
    "worker_paused": "heartbeat",
    "worker_heartbeat_age_s": "heartbeat",
    "worker_breaker_open": "heartbeat",
    "entity_error_rate": "heartbeat",
    "queue_depth": "rabbitmq",
    "queue_consumers": "rabbitmq",
    "queue_unacked": "rabbitmq",
    "redis_used_memory_bytes": "redis",
    "redis_memory_used_ratio": "redis",  # of maxmemory; only when maxmemory is set
    "redis_connected_clients": "redis",
    "redis_rdb_last_save_failed": "redis",
    "target_up": "collectors",
}

_COMPARE: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
Duration = Annotated[float, Field(ge=0, le=30 * 24 * 3600)]


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"bad duration {value!r}")
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for suffix in ("ms", "s", "m", "h", "d"):
        if value.endswith(suffix):
            number = value[: -len(suffix)]
            try:
                return float(number) * units[suffix]
            except ValueError:
                break
    raise ValueError(f"bad duration {value!r} (use e.g. 30s, 5m, 1h)")


class BurnWindow(BaseModel):
    """One long/short window pair and the burn rate both must exceed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    severity: Literal["warning", "critical"] = "critical"

    @field_validator("long", "short", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Rule(BaseModel):
    """One alert rule (per instance: nothing mutable is shared between rules)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    metric: str
    kind: Literal["threshold", "burn_rate"] = "threshold"
    labels: dict[str, str] = {}
    comparison: Literal[">", ">=", "<", "<=", "==", "!="] = ">"
    warning: float | None = None
    critical: float | None = None
    for_s: Duration = Field(default=0.0, alias="for")
    keep_firing_for_s: Duration = Field(default=0.0, alias="keep_firing_for")
    hysteresis: float = Field(default=0.0, ge=0, lt=1)
    objective: float | None = Field(default=None, gt=0, lt=1)
    windows: tuple[BurnWindow, ...] = ()
    summary: str = ""
    runbook_url: str | None = None
    severity_labels: dict[str, str] = {}
    quarantine: bool = False
    inhibits: tuple[str, ...] = ()  # label values of "depends_on" this alert mutes

    @field_validator("for_s", "keep_firing_for_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; known: {', '.join(sorted(METRICS))}")
        return value

    def model_post_init(self, _context: Any) -> None:
        """Check the fields that only make sense together."""
        if self.kind == "threshold":
            if self.warning is None and self.critical is None:
                raise ValueError("a threshold rule needs warning or critical")
            for value in (self.warning, self.critical):
                if value is not None and not math.isfinite(value):
                    raise ValueError("thresholds must be finite")
        elif self.objective is None or not self.windows:
            raise ValueError("a burn_rate rule needs objective and windows")

    def breached(self, value: float, threshold: float, *, clearing: bool) -> bool:
        """Whether ``value`` is past ``threshold`` (past the hysteresis line when clearing)."""
        line = threshold
        if clearing and self.hysteresis:
            span = abs(threshold) * self.hysteresis
            line = threshold - span if self.comparison in {">", ">="} else threshold + span
        return _COMPARE[self.comparison](value, line)

    @property
    def longest_window_s(self) -> float:
        """The longest span of history this rule reads."""
        spans = [self.for_s, self.keep_firing_for_s, *(w.long for w in self.windows)]
        return max(spans)


def parse_rules(text: str, *, source: str = "<rules>") -> list[Rule]:
    """Rules from YAML text; ConfigError naming the line and the reason."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(f"{source}:{line}: not valid YAML: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise ConfigError(f"{source}:1: expected a mapping with a 'rules' list")
    nodes = _rule_nodes(root)
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["rules"]):
        line = nodes[index] if index < len(nodes) else 0
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ConfigError(f"{source}:{line}: {where}: {first['msg']}") from None
        if rule.name in seen:
            raise ConfigError(f"{source}:{line}: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        rules.append(rule)
    return rules


def _rule_nodes(root: Any) -> list[int]:
    """The 1-based line of each item of the top-level ``rules`` list."""
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "rules" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def load_rules(path: str | None) -> list[Rule]:
    """Rules from ``path``, or the shipped defaults."""
    if path is None:
        text = resources.files("workers.health_monitor").joinpath("rules.yaml").read_text()
        return parse_rules(text, source="rules.yaml (shipped)")
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read rules: {error}") from None
    return parse_rules(text, source=path)
