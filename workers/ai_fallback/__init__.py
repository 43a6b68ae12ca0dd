"""The AI fallback worker: LLM completions through an ordered chain of providers."""

from __future__ import annotations

from common.service import WorkerContext
from workers.ai_fallback.service import AiFallback

__all__ = ["AiFallback", "create"]


def create(ctx: WorkerContext) -> AiFallback:
    """The worker for ``ctx``."""
    return AiFallback(ctx)
