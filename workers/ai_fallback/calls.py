"""The one seam where a provider call leaves the process: each model's guard.

Every model gets its own guard, named ``llm:<provider>:<model>:<key_ref>`` (so one breaker per
provider, model and key), configured from the model and the ``ai_fallback`` section: the
attempt's timeout is what is left of the request's deadline (capped by the model's timeout),
one attempt (the chain is the retry, and Retry-After waits are the walker's), a bulkhead of
``max_concurrency`` held only for the call, and a breaker that counts only failures of the
model itself (5xx, timeouts, broken connections, malformed answers), never rate limits,
authentication, context-length or content-policy refusals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from common.config.workers import AiFallbackSettings
from common.reliability.breaker import CircuitBreaker
from common.reliability.breaker_types import BreakerConfig, State
from common.reliability.guard import Guard, GuardConfig, Guards
from workers.ai_fallback.chain import Model
from workers.ai_fallback.providers import ModelFailureError

__all__ = ["ModelCalls", "counts_toward_breaker"]

T = TypeVar("T")
_OPEN = frozenset({State.OPEN, State.FORCED_OPEN})


def counts_toward_breaker(error: BaseException) -> bool:
    """Failures of the model itself; refusals (429, 401, 400...) say nothing of its health."""
    return isinstance(error, ModelFailureError | TimeoutError | OSError)


def _config(model: Model, settings: AiFallbackSettings) -> GuardConfig:
    return GuardConfig(
        timeout_s=model.spec.timeout_s,
        max_attempts=1,
        base_backoff_s=0.0,
        max_backoff_s=0.0,
        deadline_s=None,
        breaker=BreakerConfig(
            window_size=settings.breaker_window,
            minimum_calls=min(settings.breaker_minimum_calls, settings.breaker_window),
            failure_rate=settings.breaker_failure_threshold,
            open_s=settings.breaker_open_s,
            max_open_s=max(settings.breaker_open_s, 300.0),
            slow_call_s=model.spec.timeout_s,
            is_failure=counts_toward_breaker,
        ),
        max_concurrent=model.spec.max_concurrency,
        max_waiting=model.spec.max_concurrency * 4,
    )


class ModelCalls:
    """Guarded calls to each model."""

    def __init__(
        self,
        models: dict[str, Model],
        settings: AiFallbackSettings,
        guards: Guards,
        *,
        on_state_change: Callable[[Model], None] = lambda _m: None,
    ) -> None:
        self._guards: dict[str, Guard] = {}
        for name, model in models.items():
            guard = guards.guard(model.dependency, config=_config(model, settings))
            guard.breaker.add_listener(self._listener(model, on_state_change))
            self._guards[name] = guard

    @staticmethod
    def _listener(
        model: Model, on_state_change: Callable[[Model], None]
    ) -> Callable[[CircuitBreaker, State, State], None]:
        def changed(_breaker: CircuitBreaker, _old: State, _new: State) -> None:
            on_state_change(model)

        return changed

    def breaker(self, model: Model) -> CircuitBreaker:
        """The model's breaker."""
        return self._guards[model.name].breaker

    def is_open(self, model: Model) -> bool:
        """True while the model's breaker refuses calls (an expired open period reads half-open,
        so the walk lets a probe through)."""
        return self._guards[model.name].breaker.state in _OPEN

    async def run(self, model: Model, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """``call()`` under the model's guard, cut at ``timeout_s``."""
        return await self._guards[model.name].call(call, timeout_s=timeout_s)
