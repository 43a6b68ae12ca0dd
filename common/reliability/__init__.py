"""Reliability: breakers, retries with budgets, bulkheads, timeouts, dedup, batching, guard().

``Guards(metrics=...).guard("http:prices")`` is the one way to make an external call; the parts
it composes are usable on their own.
"""

from common.reliability.batcher import DynamicBatcher
from common.reliability.breaker import (
    BreakerConfig,
    BreakerStats,
    CircuitBreaker,
    Listener,
    State,
    default_is_failure,
)
from common.reliability.budget import RetryBudget
from common.reliability.bulkhead import Bulkhead
from common.reliability.clock import Clock, ManualClock, SystemClock, system_clock
from common.reliability.dedup import RequestDeduplicator, request_key
from common.reliability.errors import (
    BatchError,
    BulkheadFull,
    CallTimeout,
    CircuitOpen,
    RetryError,
)
from common.reliability.guard import KIND_DEFAULTS, Guard, GuardConfig, Guards
from common.reliability.hooks import ReliabilityHooks
from common.reliability.retry import (
    RetryPolicy,
    default_is_retryable,
    instant_waits,
    parse_retry_after,
    retry_after_hint,
    set_instant_waits,
)
from common.reliability.shared import SharedBreakerState
from common.reliability.timeouts import Timeout, timeout

__all__ = [
    "KIND_DEFAULTS",
    "BatchError",
    "BreakerConfig",
    "BreakerStats",
    "Bulkhead",
    "BulkheadFull",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "DynamicBatcher",
    "Guard",
    "GuardConfig",
    "Guards",
    "Listener",
    "ManualClock",
    "ReliabilityHooks",
    "RequestDeduplicator",
    "RetryBudget",
    "RetryError",
    "RetryPolicy",
    "SharedBreakerState",
    "State",
    "SystemClock",
    "Timeout",
    "default_is_failure",
    "default_is_retryable",
    "instant_waits",
    "parse_retry_after",
    "request_key",
    "retry_after_hint",
    "set_instant_waits",
    "system_clock",
    "timeout",
]
