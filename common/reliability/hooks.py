"""Logging and metrics for the reliability toolkit, plugged in as hooks.

The breaker, retry policy and bulkhead know nothing of Prometheus or structlog; this adapter
turns their listeners and hooks into log events with stable dotted names (``breaker.opened``,
``breaker.half_opened``, ``breaker.closed``, ``retry.scheduled``, ``retry.gave_up``,
``retry.budget_exhausted``) and into the :class:`~common.metrics.ReliabilityMetrics` of the
:class:`~common.metrics.Metrics` object it is given (none: logs only). Labels are bounded: the
dependency name, states, outcomes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import structlog

from common import tracing
from common.metrics import Metrics
from common.reliability.breaker import STATE_CODES, CircuitBreaker, State
from common.reliability.retry import RetryPolicy

__all__ = ["CallObserver", "ReliabilityHooks"]

CallObserver = Callable[[str, float], None]  # outcome, seconds

_EVENTS = {
    State.OPEN: "breaker.opened",
    State.HALF_OPEN: "breaker.half_opened",
    State.CLOSED: "breaker.closed",
    State.FORCED_OPEN: "breaker.forced_open",
    State.DISABLED: "breaker.disabled",
}


class ReliabilityHooks:
    """Wires breakers, retry policies and calls of one registry to logs and metrics."""

    def __init__(self, metrics: Metrics | None = None, *, logger: Any = None) -> None:
        self.metrics = metrics
        self._log = logger if logger is not None else structlog.get_logger("eventguard.reliability")

    # -- breakers ---------------------------------------------------------------------------

    def attach_breaker(self, breaker: CircuitBreaker) -> None:
        """Log and count every state change of ``breaker``; publish its state now."""
        breaker.add_listener(self.on_breaker_change)
        if self.metrics is not None:
            self.metrics.reliability.breaker_state.labels(breaker.name).set(
                STATE_CODES[breaker.state]
            )

    def on_breaker_change(self, breaker: CircuitBreaker, old: State, new: State) -> None:
        """A breaker listener: ``breaker.<state>`` log event, state gauge, transition counter."""
        level = self._log.warning if new in {State.OPEN, State.FORCED_OPEN} else self._log.info
        level(
            _EVENTS[new],
            dependency=breaker.name,
            from_state=old.value,
            to_state=new.value,
            open_s=round(breaker.remaining_open_s(), 3) if new is State.OPEN else None,
        )
        if tracing.tracer is not None:  # on the span of the call that moved it, if any
            tracing.add_event(_EVENTS[new], {"dependency": breaker.name, "from_state": old.value})
        if self.metrics is not None:
            r = self.metrics.reliability
            r.breaker_state.labels(breaker.name).set(STATE_CODES[new])
            r.breaker_transitions.labels(breaker.name, old.value, new.value).inc()

    def count_breaker_calls(self, source: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """Export ``(dependency, outcome, count)`` triples as eventguard_breaker_calls_total."""
        if self.metrics is not None:
            self.metrics.reliability.breaker_call_sources.append(source)

    # -- retries ----------------------------------------------------------------------------

    def instrument_retry(self, policy: RetryPolicy, name: str) -> RetryPolicy:
        """``policy`` with hooks that log and count its retries (its own hooks still run)."""
        retries = exhausted = None
        if self.metrics is not None:
            retries = self.metrics.reliability.retries.labels(name)
            exhausted = self.metrics.reliability.retry_budget_exhausted.labels(name)
        log = self._log
        inner_retry, inner_exhausted = policy.on_retry, policy.on_budget_exhausted
        inner_giveup = policy.on_giveup

        def on_retry(attempt: int, error: BaseException, delay: float) -> None:
            if retries is not None:
                retries.inc()
            log.info(
                "retry.scheduled",
                dependency=name,
                attempt=attempt,
                delay_s=round(delay, 3),
                error=type(error).__name__,
            )
            if tracing.tracer is not None:
                tracing.add_event(
                    "retry.scheduled",
                    {"attempt": attempt, "delay_s": delay, "error": type(error).__name__},
                )
            if inner_retry is not None:
                inner_retry(attempt, error, delay)

        def on_exhausted(error: BaseException) -> None:
            if exhausted is not None:
                exhausted.inc()
            log.warning("retry.budget_exhausted", dependency=name, error=type(error).__name__)
            if inner_exhausted is not None:
                inner_exhausted(error)

        def on_giveup(attempts: int, error: BaseException, reason: str) -> None:
            log.info(
                "retry.gave_up",
                dependency=name,
                attempts=attempts,
                reason=reason,
                error=type(error).__name__,
            )
            if tracing.tracer is not None:
                tracing.add_event(
                    "retry.gave_up",
                    {"attempts": attempts, "reason": reason, "error": type(error).__name__},
                )
            if inner_giveup is not None:
                inner_giveup(attempts, error, reason)

        return replace(
            policy, on_retry=on_retry, on_budget_exhausted=on_exhausted, on_giveup=on_giveup
        )

    # -- calls ------------------------------------------------------------------------------

    def call_observer(self, name: str) -> CallObserver:
        """Records one guarded call: time by outcome; a bulkhead refusal is counted too."""
        if self.metrics is None:
            return _ignore
        r = self.metrics.reliability
        children = {
            outcome: r.external_call.labels(name, outcome)
            for outcome in ("success", "error", "timeout", "rejected")
        }
        rejected = r.bulkhead_rejected.labels(name)

        def observe(outcome: str, seconds: float) -> None:
            if tracing.tracer is None:
                children[outcome].observe(seconds)
            else:
                children[outcome].observe(seconds, tracing.exemplar())
            if outcome == "rejected":
                rejected.inc()

        return observe


def _ignore(_outcome: str, _seconds: float) -> None:
    """The observer when there are no metrics."""
