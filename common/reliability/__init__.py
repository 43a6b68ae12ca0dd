"""Reliability: breakers, retries with budgets, bulkheads, timeouts, dedup, batching, guard()."""

from common.reliability.batcher import DynamicBatcher
from common.reliability.breaker import BreakerConfig, CircuitBreaker, State, default_is_failure
from common.reliability.budget import RetryBudget
from common.reliability.bulkhead import Bulkhead
from common.reliability.clock import Clock, ManualClock, SystemClock, system_clock
from common.reliability.dedup import RequestDeduplicator, request_key
from common.reliability.errors import (
    BatchError,
    BulkheadFull,
    CircuitOpen,
    RetryBudgetExhausted,
    RetryError,
)
from common.reliability.guard import KIND_DEFAULTS, Guard, GuardConfig, Guards
from common.reliability.retry import RetryPolicy, default_is_retryable, parse_retry_after
from common.reliability.shared import SharedBreakerState

__all__ = [
    "KIND_DEFAULTS",
    "BatchError",
    "BreakerConfig",
    "Bulkhead",
    "BulkheadFull",
    "CircuitBreaker",
    "CircuitOpen",
    "Clock",
    "DynamicBatcher",
    "Guard",
    "GuardConfig",
    "Guards",
    "ManualClock",
    "RequestDeduplicator",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryError",
    "RetryPolicy",
    "SharedBreakerState",
    "State",
    "SystemClock",
    "default_is_failure",
    "default_is_retryable",
    "parse_retry_after",
    "request_key",
    "system_clock",
]
