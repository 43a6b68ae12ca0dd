"""The AI fallback worker: LLM completions through an ordered chain of providers."""

from __future__ import annotations

from common.service import WorkerContext
from workers.ai_fallback.service import AiFallbackService

__all__ = ["AiFallbackService", "create"]


def create(ctx: WorkerContext) -> AiFallbackService:
    """The worker for ``ctx``."""
    return AiFallbackService(ctx)
