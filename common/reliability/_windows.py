"""The breaker's sliding windows: the last N calls (a ring) or the last N seconds (buckets)."""

from __future__ import annotations

from collections import deque

__all__ = ["CountWindow", "TimeWindow"]


class CountWindow:
    """The last ``size`` outcomes in a ring; ``clean`` is true while it holds no bad outcome,
    which lets the closed-state fast path skip it entirely for a success."""

    __slots__ = ("calls", "clean", "failures", "pos", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = [0] * size
        self.pos = 0
        self.calls = self.failures = self.slow = 0
        self.clean = False  # not full yet: successes must still be counted

    def add(self, failed: bool, slow: bool, _now: float) -> None:
        code = (1 if failed else 0) | (2 if slow else 0)
        old = self.ring[self.pos]
        self.ring[self.pos] = code
        self.pos = (self.pos + 1) % self.size
        if self.calls < self.size:
            self.calls += 1
        else:
            self.failures -= old & 1
            self.slow -= (old >> 1) & 1
        self.failures += code & 1
        self.slow += (code >> 1) & 1
        self.clean = self.calls == self.size and self.failures == 0 and self.slow == 0

    def totals(self, _now: float) -> tuple[int, int, int]:
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        self.ring = [0] * self.size
        self.pos = 0
        self.calls = self.failures = self.slow = 0
        self.clean = False


class TimeWindow:
    """Outcomes of the last ``seconds`` seconds, in one-second buckets."""

    __slots__ = ("buckets", "clean", "seconds")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.clean = False  # every success lands in a bucket
        self.buckets: deque[list[float]] = deque()  # [second, calls, failures, slow]

    def _evict(self, now: float) -> None:
        horizon = int(now) - self.seconds
        buckets = self.buckets
        while buckets and buckets[0][0] <= horizon:
            buckets.popleft()

    def add(self, failed: bool, slow: bool, now: float) -> None:
        second = int(now)
        buckets = self.buckets
        if not buckets or buckets[-1][0] != second:
            self._evict(now)
            buckets.append([second, 0, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._evict(now)
        calls = failures = slow = 0
        for _, c, f, s in self.buckets:
            calls += int(c)
            failures += int(f)
            slow += int(s)
        return calls, failures, slow

    def clear(self) -> None:
        self.buckets.clear()
