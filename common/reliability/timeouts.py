"""Timeouts on awaited external calls, with an error that names the dependency.

:class:`CallTimeout` is both an :class:`~common.errors.ExternalCallError` (so the consumer
boundary treats it as a failure that may pass) and a :class:`TimeoutError` (so code that already
catches ``TimeoutError`` keeps working, and the breaker and retry count it as transient). Only a
timeout that this scope itself fired is converted; a ``TimeoutError`` raised by the call inside
passes through unchanged.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TypeVar

from common.reliability.errors import CallTimeout

__all__ = ["Timeout", "timeout"]

T = TypeVar("T")


class Timeout:
    """``async with Timeout(seconds, name):`` -- cancel the body after ``seconds``.

    ``seconds=None`` means no limit. A class (not a generator-based context manager) so that it
    costs next to nothing on the guard's path.
    """

    __slots__ = ("_inner", "name", "seconds")

    def __init__(self, seconds: float | None, name: str = "") -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError("a timeout must be positive (or None for no limit)")
        self.seconds = seconds
        self.name = name
        self._inner: asyncio.Timeout | None = None

    async def __aenter__(self) -> Timeout:
        if self.seconds is not None:
            self._inner = asyncio.timeout(self.seconds)
            await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        inner = self._inner
        if inner is None:
            return
        try:
            await inner.__aexit__(exc_type, exc, tb)
        except TimeoutError as error:
            if inner.expired():
                raise CallTimeout(self.name, self.seconds or 0.0) from error
            raise

    @property
    def expired(self) -> bool:
        """True once this scope's deadline has fired."""
        return self._inner is not None and self._inner.expired()


def timeout(seconds: float | None, name: str = "") -> Timeout:
    """A :class:`Timeout` scope: ``async with timeout(2.0, "http:prices"): ...``."""
    return Timeout(seconds, name)
