"""The one seam where a provider call leaves the process.

TEMPORARY until common/reliability lands: a per-model concurrency bound and the attempt's
timeout. Replace the body with the model's guard (its own breaker per provider, model and key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from common.config import AiFallbackSettings
from workers.ai_fallback.chain import Model

__all__ = ["ModelCalls"]

T = TypeVar("T")


class ModelCalls:
    """Guarded calls to each model."""

    def __init__(self, models: dict[str, Model], settings: AiFallbackSettings) -> None:
        self._limits = {n: asyncio.Semaphore(m.spec.max_concurrency) for n, m in models.items()}

    def is_open(self, model: Model) -> bool:
        """True while the model's breaker refuses calls."""
        return False

    async def run(self, model: Model, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """``call()`` under the model's guard, cut at ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            async with self._limits[model.name]:
                return await call()
