"""Timeouts: a named CallTimeout for our own deadline, anything else passes through."""

from __future__ import annotations

import asyncio

import pytest

from common.errors import ExternalCallError
from common.reliability.errors import CallTimeout
from common.reliability.timeouts import Timeout, timeout


async def test_own_deadline_raises_a_named_call_timeout() -> None:
    """A body cut by the scope raises CallTimeout, which is also a TimeoutError."""
    with pytest.raises(CallTimeout) as cut:
        async with timeout(0.001, "http:prices") as scope:
            await asyncio.sleep(1)
    assert scope.expired
    assert isinstance(cut.value, TimeoutError)
    assert isinstance(cut.value, ExternalCallError)
    assert cut.value.name == "http:prices"
    assert "http:prices" in str(cut.value)


async def test_a_timeout_error_from_inside_passes_through_unchanged() -> None:
    """A TimeoutError the call raised itself is not relabelled as ours."""

    async def inner() -> None:
        raise TimeoutError("the library's own")

    with pytest.raises(TimeoutError, match="the library's own") as raised:
        async with Timeout(5, "dep") as scope:
            await inner()
    assert not isinstance(raised.value, CallTimeout)
    assert not scope.expired


async def test_no_limit_and_results_pass_through() -> None:
    """None means no limit; a value awaited inside a scope comes out unchanged."""
    async with Timeout(None):
        await asyncio.sleep(0)

    async def value() -> int:
        return 7

    async with timeout(1.0, "dep"):
        assert await value() == 7
    async with timeout(None):
        assert await value() == 7


def test_non_positive_timeouts_are_refused() -> None:
    """Zero or negative timeouts are configuration errors, not instant failures."""
    with pytest.raises(ValueError, match="positive"):
        Timeout(0)
    with pytest.raises(ValueError, match="positive"):
        Timeout(-1)
