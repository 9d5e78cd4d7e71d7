"""Reads that follow what can change: targeted reads every round, a full relist spread over rounds.

Most entities of a big listing are finished and will not change, yet a plain sweep re-reads all of
them before it comes back to the few that can. An informer-style source re-reads only the live ones
each cycle (by status filter or by id) and spreads one full relist over the cycles, so finished
entities are still read (vendors restart them) and vanishes are still found.

:class:`RelistPass` is that relist: which page comes next, what the pass has read, whether it is
complete. :meth:`RelistPass.plan` is the scheduler's split of one source's share of an (API,
credential) budget: a round (a source's poll cycle holds a few) spends about one window's share,
targeted reads first and the relist the rest; the relist takes more only when it would miss its
staleness deadline, and never more than one window's share per round, so catching up after an
outage is spread over rounds instead of starving targeted reads.

Only a complete pass may vanish anything: every page reported the same total and the pages held
that many distinct entities. Each pass must end within half the maximum staleness, so an entity
that keeps its place in the listing is read at least once per maximum staleness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from poller.pipeline.snapshot import EntitySnapshot

__all__ = ["ReadKind", "ReadObserver", "RelistPass"]


class ReadKind:
    """The labels of the reads a source reports (a metric label: a small fixed set)."""

    TARGETED = "targeted"
    BY_ID = "by_id"
    RELIST = "relist"
    FULL = "full"


class ReadObserver(Protocol):
    """Where a source reports its scheduling choices (the service passes the metrics)."""

    def __call__(
        self, vendor: str, account: str, scope: str, *, requests: dict[str, int], staleness: float
    ) -> None: ...


class RelistPass:
    """One full listing read a few pages per cycle; ``read`` keeps every later read of an entity too."""

    def __init__(
        self, first_number: int, max_staleness: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.first_number = first_number
        self.max_staleness = max_staleness
        self.clock = clock
        #: when the last complete pass (or full sweep) started: nothing read is older than that
        self.last_complete_started: float | None = None
        self._restart()

    def _restart(self) -> None:
        self.started_at = self.clock()
        self.next_number = self.first_number
        self.totals: set[int] = set()
        #: every entity this pass or a later targeted read saw, the latest read winning
        self.by_id: dict[str, EntitySnapshot] = {}
        #: the ids the pass's own pages held (its completeness is counted on these only)
        self.listed: set[str] = set()
        #: a page inside the announced total came back empty: the total was wrong, the pass ends
        self.ended_short = False

    @property
    def total(self) -> int | None:
        return max(self.totals) if self.totals else None

    def pages(self, page_size: int) -> int | None:
        total = self.total
        return None if total is None else max(1, -(-total // page_size))

    def remaining(self, page_size: int) -> int | None:
        pages = self.pages(page_size)
        if pages is None:
            return None
        return 0 if self.ended_short else max(0, self.first_number + pages - self.next_number)

    def staleness(self) -> float:
        """Seconds since the start of the last complete pass: the oldest a read can be (inf if none)."""
        started = self.last_complete_started
        return math.inf if started is None else self.clock() - started

    def plan(self, page_size: int, targeted: int, share: float, cycle_seconds: float) -> int:
        """How many relist pages this round reads, beside ``targeted`` requests, of a per-window ``share``.

        A round spends about one window's share: what the targeted reads leave of it goes to the
        relist (a round of a window keeps its fixed costs small beside the reads, while a live
        change still waits about one window). If that would not end the pass by its deadline at the
        current round length (``cycle_seconds``), the relist takes what it needs, but never more
        than one share in one round: a pass that fell behind (an outage) catches up over several
        rounds instead of starving the targeted reads.
        """
        per_cycle = max(1, math.floor(share))
        fill = max(1, per_cycle - targeted)
        remaining = self.remaining(page_size)
        if remaining is None:
            return fill  # the first page tells the total
        deadline = self.started_at + self.max_staleness / 2
        cycles_left = max(1.0, (deadline - self.clock()) / max(0.01, cycle_seconds))
        needed = math.ceil(remaining / cycles_left)
        return min(remaining, max(fill, min(needed, per_cycle)))

    def numbers(self, count: int) -> range:
        """The next ``count`` page numbers of the pass."""
        start = self.next_number
        self.next_number += count
        return range(start, start + count)

    def listed_page(self, snapshots: Iterable[EntitySnapshot], total: int) -> None:
        """One page of the pass; an empty page where the total promised more ends it, incomplete."""
        self.totals.add(total)
        empty = True
        for snap in snapshots:
            empty = False
            self.listed.add(snap.id)
            self.by_id[snap.id] = snap
        if empty and total > 0:
            self.ended_short = True

    def read(self, snapshots: Iterable[EntitySnapshot]) -> None:
        """A targeted read: fresher than what the pass listed earlier, but no proof of completeness."""
        by_id = self.by_id
        for snap in snapshots:
            by_id[snap.id] = snap

    def done(self, page_size: int) -> bool:
        remaining = self.remaining(page_size)
        return remaining is not None and remaining == 0

    def finish(self) -> tuple[list[EntitySnapshot], bool]:
        """Every entity the pass knows and whether the pass was complete; the next pass starts."""
        complete = (
            not self.ended_short and len(self.totals) == 1 and len(self.listed) == next(iter(self.totals))
        )
        entities = list(self.by_id.values())
        if complete:
            self.last_complete_started = self.started_at
        self._restart()
        return entities, complete

    def full_sweep(self, started_at: float) -> None:
        """A complete listing read in one cycle also satisfies the staleness bound: start afresh."""
        self.last_complete_started = started_at
        self._restart()
