"""Sliding-window rate limiting per (vendor API, credential), counted on when requests are *sent*.

The vendors count arrivals per one-second window. Stamping a request when it is allowed to start is
not enough: on a busy machine it may reach the socket much later, next to requests started a whole
window after it. So a request holds a :class:`Slot` from the moment it is allowed until one window
after its headers were written (aiohttp's trace hook marks that); a slot not yet sent counts as in
the window. With at most ``limit`` slots counted when each request is allowed, no window of send
times can hold more than ``limit`` requests: the one allowed last saw all the others counted. A small
``margin`` covers the network between our socket and the vendor's clock.

Within that guarantee, starts are paced one ``window / limit`` apart rather than let out a window's
worth at once: a burst queues up at the vendor's front door, is stamped there over tens of
milliseconds and crowds the next window (seen in the benchmark as one throttling answer per run);
paced, every request meets an idle gateway, and pages (hence detection latency) are spread evenly.
Pacing runs on a grid, so the event loop's lateness in one wake-up does not cost a start. Starts
left unused for a while (the event loop busy with a cycle's end, the barrier between two rounds of
reads, a short pause between polls) are made up for, up to ``CATCH_UP`` of a window of them: they
follow at twice the pace, never together, until the grid is caught up. A longer idle spell is made
up for no further than that, and a throttling pause not at all.

A throttling answer pauses every worker of that API at once and lowers the effective limit, which
then climbs back linearly.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import anyio

#: seconds added to the vendor's window: our send stamps and its arrival stamps differ by the network's
#: jitter. 20 ms leaves 98% of a limit usable; with starts paced (no queue at the vendor's front door)
#: the benchmark's simulators saw none of it. Far from the vendor, raise ``rate_limit_margin``.
DEFAULT_MARGIN = 0.02
#: the credential of a limit that covers an API for every caller together (Alibaba AICCS): a fleet of
#: replicas splits it between the replicas that use it
FLEET_WIDE = "*"
#: the share of a window of stalled starts that is made up for afterwards, at twice the pace
CATCH_UP = 0.25


class Slot:
    """One request's place in the window; ``sent()`` starts its one-window countdown."""

    __slots__ = ("_limiter", "sent_at")

    def __init__(self, limiter: SlidingWindowLimiter) -> None:
        self._limiter = limiter
        self.sent_at = math.inf  # not sent yet: counts as in the window

    def sent(self) -> None:
        if self.sent_at == math.inf:
            self.sent_at = self._limiter.clock()
            self._limiter.changed()


class SlidingWindowLimiter:
    def __init__(
        self,
        limit: int,
        *,
        window: float = 1.0,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        if limit < 1:
            raise ValueError("rate limit must be at least 1 request per window")
        self.name = name
        self.limit = limit
        self.window = window + margin
        self.clock = clock
        self._slots: deque[Slot] = deque()
        self._lock = anyio.Lock()
        self._wake = anyio.Event()
        self._paused_until = 0.0
        #: the earliest time the next start may be allowed (the pacing grid)
        self._next_start = -math.inf
        #: half a spacing after the last start: how fast starts behind the grid catch up
        self._not_before = -math.inf
        self._reduced_to = float(limit)
        self._reduced_at = -1e18
        self.started = 0
        self.throttle_answers = 0
        #: this process's part of a limit that a fleet of replicas shares (1: all of it)
        self.share = 1.0
        #: how many sources draw on this limit (each plans its reads for its fair share of it)
        self.sharers = 0

    def per_sharer(self) -> float:
        """One source's fair part of the effective limit, per window."""
        return self.effective_limit() / max(1, self.sharers)

    def effective_limit(self, now: float | None = None) -> int:
        """The limit in force: full (or this replica's share of a fleet-wide one), or climbing back
        by 10% of it per window after a throttle."""
        now = self.clock() if now is None else now
        cap = max(1, int(self.limit * self.share))
        regained = (now - self._reduced_at) / self.window * max(1.0, cap * 0.1)
        return max(1, min(cap, int(self._reduced_to + regained)))

    def _occupied(self, now: float) -> int:
        """Slots still in the window: unsent ones, and sent ones less than a window ago."""
        while self._slots and now - self._slots[0].sent_at >= self.window:
            self._slots.popleft()
        return sum(1 for slot in self._slots if now - slot.sent_at < self.window)

    def in_window(self, now: float | None = None) -> int:
        return self._occupied(self.clock() if now is None else now)

    def changed(self) -> None:
        self._wake.set()

    async def acquire(self) -> Slot:
        """Wait until one more request may start; the caller marks ``sent()`` when it goes out."""
        async with self._lock:
            while True:
                now = self.clock()
                if now < self._paused_until:
                    await anyio.sleep(self._paused_until - now)
                    continue
                earliest = max(self._next_start, self._not_before)
                if now < earliest:
                    await anyio.sleep(earliest - now)
                    continue
                limit = self.effective_limit(now)
                if self._occupied(now) < limit:
                    slot = Slot(self)
                    self._slots.append(slot)
                    self.started += 1
                    # the next grid point: lateness does not add up, and the grid stays where it
                    # was for a stall of up to CATCH_UP of a window (its starts follow half a
                    # spacing apart until they are back on it)
                    spacing = self.window / limit
                    resume = max(self._next_start, now - CATCH_UP * self.window)
                    if self._next_start == -math.inf:
                        resume = now  # a new limiter has left nothing unused
                    self._next_start = resume + spacing
                    self._not_before = now + spacing / 2
                    return slot
                sent = [s.sent_at for s in self._slots if s.sent_at != math.inf]
                wait = (min(sent) + self.window - now) if sent else self.window
                self._wake = anyio.Event()
                with anyio.move_on_after(max(0.0, wait)):
                    await self._wake.wait()

    def throttled(self, retry_after: float | None = None) -> None:
        """The vendor said we went too fast: pause everyone on this API and slow down."""
        now = self.clock()
        self.throttle_answers += 1
        self._paused_until = max(self._paused_until, now + (retry_after if retry_after else self.window))
        # nothing held back by the pause is made up for: the vendor asked for less, not later
        self._next_start = max(self._next_start, self._paused_until)
        self._reduced_to = max(1.0, self.effective_limit(now) * 0.7)
        self._reduced_at = now


class LimiterRegistry:
    """One limiter per (vendor, API, credential), created on first use and shared by every worker."""

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str, str], SlidingWindowLimiter] = {}

    def get(
        self, vendor: str, api: str, credential: str, limit: int, margin: float = DEFAULT_MARGIN
    ) -> SlidingWindowLimiter:
        key = (vendor, api, credential)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = SlidingWindowLimiter(limit, margin=margin, name=f"{vendor}/{api}")
            self._limiters[key] = limiter
        limiter.sharers += 1
        return limiter

    def items(self) -> list[tuple[tuple[str, str, str], SlidingWindowLimiter]]:
        return list(self._limiters.items())

    def set_fleet_share(self, vendor: str, api: str, share: float) -> None:
        """This replica's part of the fleet-wide limit of ``vendor``'s ``api``."""
        limiter = self._limiters.get((vendor, api, FLEET_WIDE))
        if limiter is not None:
            limiter.share = min(1.0, max(share, 0.0))
