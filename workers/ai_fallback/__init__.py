"""The AI fallback worker: LLM completions through an ordered chain of providers."""

from __future__ import annotations

from common.service import BASE_CONSUMES, BASE_PUBLISHES, WorkerContext
from schemas.ai import (
    CompletionFailed,
    CompletionRequested,
    CompletionSucceeded,
    ModelDisabled,
    ModelDisableRequested,
    ModelEnabled,
    ModelEnableRequested,
)
from schemas.envelope import Payload
from schemas.health import AlertRaised, AlertResolved
from workers.ai_fallback.service import AiFallbackService

__all__ = ["CONSUMES", "PUBLISHES", "AiFallbackService", "create"]

# The payloads of the types its queue is bound to, and of those its AMQP user may publish.
CONSUMES: tuple[type[Payload], ...] = (
    *BASE_CONSUMES,
    CompletionRequested,
    ModelDisableRequested,
    ModelEnableRequested,
    ModelDisabled,  # broadcast: every replica re-reads the model's state
    ModelEnabled,
)
PUBLISHES: tuple[type[Payload], ...] = (
    *BASE_PUBLISHES,
    CompletionSucceeded,
    CompletionFailed,
    AlertRaised,
    AlertResolved,
    ModelDisabled,
    ModelEnabled,
)


def create(ctx: WorkerContext) -> AiFallbackService:
    """The worker for ``ctx``."""
    return AiFallbackService(ctx)
