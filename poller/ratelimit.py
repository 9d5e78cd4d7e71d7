"""Sliding-window rate limiting per (vendor API, credential).

The vendors count requests per one-second window, so we keep the start time of the last ``limit``
requests and start a new one only when the oldest of them left the window. A small ``margin`` widens
our window so that network jitter between our start and the vendor's arrival cannot squeeze
``limit + 1`` arrivals into one vendor-side second. A throttling answer pauses every worker of
that API at once and lowers the effective limit, which then climbs back linearly.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio


class SlidingWindowLimiter:
    def __init__(
        self,
        limit: int,
        *,
        window: float = 1.0,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        if limit < 1:
            raise ValueError("rate limit must be at least 1 request per window")
        self.name = name
        self.limit = limit
        self.window = window + margin
        self._clock = clock
        self._starts: deque[float] = deque()
        self._lock = anyio.Lock()
        self._paused_until = 0.0
        self._reduced_to = float(limit)
        self._reduced_at = -1e18
        self.started = 0
        self.throttle_answers = 0

    def effective_limit(self, now: float | None = None) -> int:
        """The limit in force: full, or climbing back by 10% of it per window after a throttle."""
        now = self._clock() if now is None else now
        regained = (now - self._reduced_at) / self.window * max(1.0, self.limit * 0.1)
        return max(1, min(self.limit, int(self._reduced_to + regained)))

    def in_window(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        return sum(1 for t in self._starts if now - t < self.window)

    async def acquire(self) -> None:
        """Wait until one more request may start, then count it as started."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await anyio.sleep(self._paused_until - now)
                    continue
                while self._starts and now - self._starts[0] >= self.window:
                    self._starts.popleft()
                limit = self.effective_limit(now)
                if len(self._starts) < limit:
                    self._starts.append(now)
                    self.started += 1
                    return
                # the request that must leave the window before one more may start
                oldest_blocking = self._starts[len(self._starts) - limit]
                await anyio.sleep(max(0.0, oldest_blocking + self.window - now))

    def throttled(self, retry_after: float | None = None) -> None:
        """The vendor said we went too fast: pause everyone on this API and slow down."""
        now = self._clock()
        self.throttle_answers += 1
        self._paused_until = max(self._paused_until, now + (retry_after if retry_after else self.window))
        self._reduced_to = max(1.0, self.effective_limit(now) * 0.7)
        self._reduced_at = now


class LimiterRegistry:
    """One limiter per (vendor, API, credential), created on first use and shared by every worker."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str, str], SlidingWindowLimiter] = {}

    def get(self, vendor: str, api: str, credential: str, limit: int) -> SlidingWindowLimiter:
        key = (vendor, api, credential)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = SlidingWindowLimiter(limit, name=f"{vendor}/{api}")
            self._limiters[key] = limiter
        return limiter

    def items(self) -> list[tuple[tuple[str, str, str], SlidingWindowLimiter]]:
        return list(self._limiters.items())
