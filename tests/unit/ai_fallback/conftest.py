"""Fixtures: a provider simulator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from workers.ai_fallback.simulator import ProviderSimulator


@pytest.fixture
async def sim() -> AsyncIterator[ProviderSimulator]:
    """A fresh simulator on 127.0.0.1."""
    async with ProviderSimulator().running() as simulator:
        yield simulator
