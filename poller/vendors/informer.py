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

:class:`Informer` is what the listing adapters share on top of it: the choice between a full sweep
and rounds, each round's relist slice beside one filtered listing per live status, and the live
entities none of those lists returned (the leavers), read again by id. A vendor gives it two reads
(a page of the listing, filtered by one status or not, and a batch of ids) and keeps what is its own
(counts over the listing, calls, details) in the adapter. A listing without a status filter
(``status_filter`` false) has no live lists: every live entity the relist slice did not just read is
a leaver, read by id each round, taking turns when there are more than a round's share.

Only a complete pass may vanish anything. The listing's total may change while a pass pages through
it (an account that creates or deletes tasks faster than a pass ends), and with offset paging an
entity can then move across a page border and be skipped, or read twice. So a pass is complete
when every page through the largest total it saw was read, no page came back empty inside the total
it reported itself, and every known entity the pass and the reads of its span (targeted, by id) did
not return was read by id at its end and is gone (:meth:`Informer._confirm_missing`): a skipped one
is found, and read, there. Each pass must end within half the maximum staleness, so every entity
is read at least once per maximum staleness, also under churn.

A filtered list that returns an entity of another status is judged against what the entity was at
the cycle's start: one whose status changed since then may have moved between the filter and the
read (taken as it says, counted ``moved``); one the filter returns with the very status it already
had says the filter is not applied (``ignored``). Then the source reads full listings for a
cool-down (:class:`FilterTrust`: ``max_staleness``, doubled at each strike up to a day), after
which targeted reads resume; a relist pass read wholly with targeted reads forgives the strikes.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Annotated, Protocol

import anyio
import msgspec

from poller.errors import TooLarge
from poller.pipeline.snapshot import EntitySnapshot
from poller.pipeline.state import VANISHED, SourceState
from poller.transport.ratelimit import SlidingWindowLimiter
from poller.vendors.listing import Listing, SeenItems, sweep_pages
from schemas import EntityKind

__all__ = [
    "MAX_COOL_DOWN",
    "FilterTrust",
    "Informer",
    "ListedPage",
    "MaxStaleness",
    "Mismatch",
    "ReadByIds",
    "ReadIds",
    "ReadKind",
    "ReadObserver",
    "ReadPage",
    "RelistPass",
]

log = logging.getLogger("poller.vendors.informer")

#: the ``max_staleness`` account field of every adapter that follows what can change (seconds)
MaxStaleness = Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)]


class ReadKind:
    """The labels of the reads a source reports (a metric label: a small fixed set)."""

    TARGETED = "targeted"
    BY_ID = "by_id"
    RELIST = "relist"
    FULL = "full"


class Mismatch:
    """The verdicts on a filtered list's entity of another status (a metric label)."""

    #: its status changed since the cycle began: it may have left the filtered one meanwhile
    MOVED = "moved"
    #: returned with the status it already had: the filter is not applied
    IGNORED = "ignored"


class ReadObserver(Protocol):
    """Where a source reports its scheduling choices (the service passes the metrics).

    ``mismatches``: a filtered list's entities of another status, by verdict; ``distrusted``:
    seconds left before targeted reads resume (0 while the status filter is relied on).
    """

    def __call__(
        self,
        vendor: str,
        account: str,
        scope: str,
        *,
        requests: dict[str, int],
        staleness: float,
        mismatches: dict[str, int],
        distrusted: float,
    ) -> None: ...


#: the longest cool-down a status filter that keeps being ignored is given before it is tried again
MAX_COOL_DOWN = 86_400.0


class FilterTrust:
    """Whether a listing's status filter is relied on; off for a cool-down after it was ignored.

    One bad answer (a glitch, a hostile answer) must not switch a source off targeted reads for
    the process's lifetime, and a vendor that keeps ignoring its filter must not cost a wasted
    round each cycle: each strike doubles the cool-down (from ``cool_down``, up to a day or
    ``cool_down`` if longer); :meth:`proved` forgives the strikes.
    """

    def __init__(self, cool_down: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cool_down = cool_down
        self.clock = clock
        self.strikes = 0
        #: when the current cool-down ends (None: relied on)
        self.until: float | None = None
        #: when the last strike happened (a pass that began after it proves the filter again)
        self.struck_at: float | None = None

    def distrust(self) -> float:
        """A strike: the filter is not relied on for the returned number of seconds."""
        self.strikes += 1
        seconds = min(
            math.ldexp(self.cool_down, min(self.strikes - 1, 32)), max(self.cool_down, MAX_COOL_DOWN)
        )
        now = self.clock()
        self.struck_at = now
        self.until = now + seconds
        return seconds

    def left(self) -> float:
        """Seconds before the filter is relied on again (0 when it is)."""
        return 0.0 if self.until is None else max(0.0, self.until - self.clock())

    @property
    def trusted(self) -> bool:
        return self.left() == 0.0

    def proved(self, since: float) -> None:
        """A pass that began at ``since`` was read wholly with targeted reads and no strike."""
        if self.struck_at is None or since > self.struck_at:
            self.strikes = 0


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
        #: a page past its own total came back empty: the listing shrank, no page after it is read
        self.reached_end = False
        #: every known entity the pass did not return was read by id and is gone (the Informer checks)
        self.confirmed = False
        #: known entities the pass missed that a read by id did not return either: gone
        self.gone: set[str] = set()

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
        if self.ended_short or self.reached_end:
            return 0
        return max(0, self.first_number + pages - self.next_number)

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

    def listed_page(
        self, snapshots: Iterable[EntitySnapshot], total: int, number: int | None = None, page_size: int = 0
    ) -> None:
        """Page ``number`` of the pass. Empty where its own total promised more, it ends the pass
        incomplete (the total was wrong); empty past its own total, the listing shrank meanwhile
        and the pass has read to its end."""
        self.totals.add(total)
        empty = True
        for snap in snapshots:
            empty = False
            self.listed.add(snap.id)
            self.by_id[snap.id] = snap
        if empty and total > 0:
            if number is not None and (number - self.first_number) * page_size >= total:
                self.reached_end = True
            else:
                self.ended_short = True

    def read(self, snapshots: Iterable[EntitySnapshot]) -> None:
        """A targeted read: fresher than what the pass listed earlier, but no proof of completeness."""
        by_id = self.by_id
        for snap in snapshots:
            by_id[snap.id] = snap

    def done(self, page_size: int) -> bool:
        remaining = self.remaining(page_size)
        return remaining is not None and remaining == 0

    @property
    def complete(self) -> bool:
        """Every page was read, none came back empty inside its own total, and what the pass was to
        find and did not is gone (:attr:`confirmed`); the totals need not agree."""
        return not self.ended_short and self.confirmed

    @property
    def consistent(self) -> bool:
        """Every page reported the same total and the pages held that many distinct entities: the
        only proof of a missed entity's absence where it cannot be read by id."""
        return not self.ended_short and len(self.totals) == 1 and len(self.listed) == next(iter(self.totals))

    def finish(self) -> tuple[list[EntitySnapshot], bool]:
        """Every entity the pass knows and whether the pass was complete; the next pass starts."""
        complete = self.complete
        entities = list(self.by_id.values())
        if complete:
            self.last_complete_started = self.started_at
        self._restart()
        return entities, complete

    def full_sweep(self, started_at: float) -> None:
        """A complete listing read in one cycle also satisfies the staleness bound: start afresh."""
        self.last_complete_started = started_at
        self._restart()


class ListedPage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One page of a listing, filtered or not: its entities and the total the vendor reported."""

    snapshots: Sequence[EntitySnapshot]
    total: int


class ReadByIds(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What one read by id found; ``unread`` ids failed on their own and stay followed;
    ``unaskable`` ids are not ids this API can be asked for (not found is no proof they are gone)."""

    found: list[EntitySnapshot]
    unread: list[str] = []
    unaskable: list[str] = []


#: one page (numbered as the vendor numbers them) of the listing, filtered by one status or not (None)
ReadPage = Callable[[int, str | None], Awaitable[ListedPage]]
#: the entities of these ids the vendor still has (an id it does not return is gone or moved away)
ReadIds = Callable[[list[str]], Awaitable[ReadByIds]]
#: where a cycle's requests per kind of read, the relist's staleness, the filtered lists' entities of
#: another status by verdict, and the seconds left before targeted reads resume go
ReadReport = Callable[[dict[str, int], float, dict[str, int], float], None]


def _same(total: int) -> int:
    return total


class Informer:
    """One source's reads that follow what can change: the choice of reads, the rounds, the leavers.

    A cycle is either one full sweep (the first, a small listing, a listing whose live lists would
    cost about as much, ``enabled`` false, or a vendor that ignores its status filter) or up to
    ``rounds`` rounds: a relist slice and one filtered listing per live status side by side, then
    the leavers by id. Every snapshot read is streamed through the cycle's :class:`Listing` as it
    arrives, and every one goes into the relist pass too, so the pass always holds the latest read
    of each entity. :meth:`end` gives the cycle's entities, or, when the cycle finished the pass,
    every entity of the pass and whether it was complete.
    """

    def __init__(
        self,
        *,
        vendor: str,
        account: str,
        api: str,
        kind: EntityKind,
        live_statuses: Iterable[str],
        first_number: int,
        page_size: int,
        max_staleness: float,
        max_entities: int,
        lists: SlidingWindowLimiter,
        by_id: SlidingWindowLimiter,
        by_id_batch: int,
        rounds: int,
        enabled: bool,
        report: ReadReport,
        status_filter: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.vendor = vendor
        self.account = account
        self.api = api
        self.kind = kind
        self.live_statuses = tuple(live_statuses)
        self._live_set = frozenset(self.live_statuses)
        self.first_number = first_number
        self.page_size = page_size
        self.max_entities = max_entities
        self.lists = lists
        self.by_id = by_id
        self.by_id_batch = by_id_batch
        self.rounds = rounds
        self.enabled = enabled
        #: the listing can be filtered by status; without, the live entities are all read by id
        self.status_filter = status_filter
        self._report = report
        #: what a full sweep hands back unchanged (see :meth:`snapshots`)
        self.seen = SeenItems()
        self.relist = RelistPass(first_number, max_staleness, clock)
        #: entities last read in a live status: what the targeted reads must account for
        self.live: set[str] | None = None
        #: the last total of the full listing and of each live status's filtered one: the next
        #: sweep of either requests every page at once, and they size the choice of reads
        self.last_total: int | None = None
        self.status_totals: dict[str, int] = {}
        #: a filtered list of this cycle returned an entity it had no business returning
        self.filter_ignored = False
        #: whether the status filter is relied on (off for a cool-down after it was ignored)
        self.trust = FilterTrust(max_staleness, clock)
        self.counts: dict[str, int] = {}
        self.mismatches: dict[str, int] = {}
        #: the committed state of the current cycle: what a mismatch is judged against
        self._committed = SourceState()
        #: the pass has read every page, but not yet every known entity it missed by id
        self._confirming = False
        #: this cycle's reads were reported (a failure reported inside is not reported again)
        self._reported = False
        self.following = False
        self._sweep_complete = False
        self._cycle_first = first_number
        #: ids any read of this cycle returned (what ``must_read`` no longer needs)
        self._read_in_cycle: set[str] = set()
        #: seconds from one round's start to the next one's (the relist paces its pass by it)
        self._round_seconds = 1.0
        self._round_started: float | None = None
        #: the last leaver a round read when it could not read them all: the next round goes on after it
        self._last_leaver: str | None = None

    # -- the choice -------------------------------------------------------------------------------------
    def pages(self, total: int) -> int:
        return -(-total // self.page_size)

    def targeted_estimate(self, live: int) -> int:
        """Requests one round's live lists take: their last totals, else one page per status and more
        (without a status filter: a read by id per batch of live entities)."""
        if not self.status_filter:
            return math.ceil(live / self.by_id_batch)
        if self.status_totals:
            return sum(max(1, self.pages(self.status_totals.get(s, 0))) for s in self.live_statuses)
        return len(self.live_statuses) + math.ceil(live / self.page_size)

    def _follows(self, committed: SourceState) -> bool:
        """Targeted rounds, or one full sweep? Rounds only pay where a sweep takes longer than a round
        (more pages than a window's share) and the live lists (or reads by id) cost well under a sweep."""
        if not self.enabled or not self.trust.trusted or not committed.entities or self.last_total is None:
            return False
        assert self.live is not None
        full = self.pages(self.last_total)
        return 2 * self.targeted_estimate(len(self.live)) < full and full > self.lists.per_sharer()

    def snapshots(
        self, items: Sequence[msgspec.Raw], build: Callable[[msgspec.Raw], EntitySnapshot], status: str | None
    ) -> Sequence[EntitySnapshot]:
        """The snapshots of a page of raw items read for ``status`` (None: the listing unfiltered).

        On a full sweep an unchanged item comes back as last sweep's very snapshot (through
        :attr:`seen`), which the differ then skips. A relist pass spans cycles, so the seen items
        could never be pruned by it: targeted rounds decode every item.
        """
        if status is None and not self.following:
            return self.seen.snapshots(items, build)
        return [build(raw) for raw in items]

    def note(self, snapshots: Iterable[EntitySnapshot]) -> None:
        """Keep the live set to what these reads say: in a live status, or not."""
        live, statuses = self.live, self._live_set
        if live is None:
            return
        for snap in snapshots:
            if snap.raw_state in statuses:
                live.add(snap.id)
            else:
                live.discard(snap.id)

    def _checked(self, page: ListedPage) -> ListedPage:
        # every read of the listing is sized by its total: the vendor's word, bounded before use
        if page.total > self.max_entities:
            raise TooLarge(
                f"the vendor reports {page.total} entities, more than max_entities = {self.max_entities}",
                api=self.api,
            )
        return page

    # -- one cycle ------------------------------------------------------------------------------------
    async def read(
        self,
        committed: SourceState,
        listing: Listing,
        read: ReadPage,
        read_ids: ReadIds,
        must_read: Collection[str] = (),
    ) -> bool:
        """This cycle's reads, streamed through ``listing``; True if they were targeted rounds.

        ``must_read``: ids the adapter needs read this cycle whatever their status (its own backlog);
        those no list returned are read by id.
        """
        if self.live is None:
            kind = self.kind.value
            self.live = {
                entity_id
                for entity_id, entity in committed.entities.items()
                if entity.kind == kind and entity.raw in self._live_set
            }
        self.following = self._follows(committed)
        self._committed = committed
        self.filter_ignored = False
        self.mismatches = {}
        self._reported = False
        self._read_in_cycle = set()
        self._cycle_first = self.relist.next_number
        if not self.following:
            self.counts = {ReadKind.FULL: 0}
            self._round_started = None
            try:
                self._sweep_complete = await self._sweep(listing, read)
            except BaseException:
                self.seen.end_sweep(complete=False)
                self.fail()
                raise
            self.seen.end_sweep(self._sweep_complete)
            return False
        if len(self.seen):
            self.seen = SeenItems()  # rounds decode plainly (below): nothing to keep for them
        self.counts = {ReadKind.RELIST: 0, ReadKind.BY_ID: 0}
        if self.status_filter:
            self.counts[ReadKind.TARGETED] = 0
        targeted = self.targeted_estimate(len(self.live))
        if not self.status_filter:
            targeted = min(targeted, self._by_id_share())  # a round reads no more by id
        try:
            for _ in range(self.rounds):
                await self._round(listing, read, read_ids, targeted, must_read)
                if self.relist.done(self.page_size) or self.filter_ignored:
                    break
                targeted = self.targeted_estimate(0)
            self._confirming = False
            if self.relist.done(self.page_size) and not self.filter_ignored:
                await self._confirm_missing(committed, listing, read_ids)
        except BaseException:
            self.fail()
            raise
        return True

    @property
    def swept(self) -> bool:
        """This cycle read the whole listing, consistently: an entity it left out is gone."""
        return not self.following and self._sweep_complete

    @property
    def complete(self) -> bool:
        """What :meth:`end` will say of this cycle's reads: a complete sweep, or a complete pass ends."""
        if not self.following:
            return self._sweep_complete
        return self._finishes and self.relist.complete

    @property
    def _finishes(self) -> bool:
        """This cycle ends the relist pass: every page read, and every entity it missed read by id."""
        return self.relist.done(self.page_size) and not self._confirming

    def end(self, current: list[EntitySnapshot]) -> tuple[list[EntitySnapshot], bool]:
        """The cycle's entities and whether they are complete; reports the cycle's reads.

        ``current``: what this cycle read (as the adapter builds its final snapshots). A cycle that
        finished the relist pass gives every entity of the pass instead, complete or not.
        """
        entities, complete = current, False
        if not self.following:
            complete = self._sweep_complete
        elif self._finishes:
            started = self.relist.started_at
            entities, complete = self.relist.finish()
            if complete and not self.filter_ignored:
                self.trust.proved(started)
        if complete and self.live is not None:
            self.live.intersection_update(snap.id for snap in entities)
        self._report_once()
        return entities, complete

    def fail(self, rewind: bool = False) -> None:
        """A failed cycle: its reads are reported; ``rewind``: its relist pages are read again (an
        adapter that published none of them)."""
        if rewind:
            self.relist.next_number = min(self.relist.next_number, self._cycle_first)
        self._report_once()

    def _report_once(self) -> None:
        if not self._reported:
            self._reported = True
            self._report(self.counts, self.relist.staleness(), self.mismatches, self.trust.left())

    async def _sweep(self, listing: Listing, read: ReadPage) -> bool:
        started = self.relist.clock()

        async def page(number: int) -> int:
            got = self._checked(await read(number, None))
            self.counts[ReadKind.FULL] += 1
            self.note(got.snapshots)
            await listing.add(got.snapshots)
            return got.total

        sweep = await sweep_pages(
            self.first_number,
            self.page_size,
            page,
            _same,
            self.lists.limit,
            self.last_total,
            max_total=self.max_entities,
            api=self.api,
        )
        self.last_total = sweep.total
        complete = sweep.totals_agree and len(listing) == sweep.total
        if complete:
            self.relist.full_sweep(started)
        return complete

    async def _round(
        self,
        listing: Listing,
        read: ReadPage,
        read_ids: ReadIds,
        targeted: int,
        must_read: Collection[str],
    ) -> None:
        """One round: a relist slice and the live lists side by side, then the leavers by id."""
        relist, size = self.relist, self.page_size
        now = relist.clock()
        if self._round_started is not None:
            self._round_seconds = now - self._round_started
        self._round_started = now
        count = relist.plan(size, targeted, self.lists.per_sharer(), self._round_seconds)

        # 1. a slice of the relist and every live status's filtered listing, side by side; each
        # page is applied as it arrives, so of two reads of one entity the later one wins
        slice_numbers = relist.numbers(count)
        numbers = iter(slice_numbers)
        seen: set[str] = set()
        read_in_cycle = self._read_in_cycle

        async def relist_worker() -> None:
            for number in numbers:
                got = self._checked(await read(number, None))
                self.counts[ReadKind.RELIST] += 1
                snaps = got.snapshots
                relist.listed_page(snaps, got.total, number, size)
                self.last_total = got.total
                read_in_cycle.update(snap.id for snap in snaps)
                if not self.status_filter:
                    seen.update(snap.id for snap in snaps)  # just read: no need to read it by id too
                self.note(snaps)
                await listing.add(snaps)

        async def status_list(status: str) -> None:
            async def page(number: int) -> int:
                if self.filter_ignored:
                    return 0  # the pages still to come would be the whole listing again
                got = self._checked(await read(number, status))
                self.counts[ReadKind.TARGETED] += 1
                snaps = got.snapshots
                wrong = [snap for snap in snaps if snap.raw_state != status]
                if wrong:
                    self._mismatched(status, wrong)
                seen.update(snap.id for snap in snaps)
                read_in_cycle.update(snap.id for snap in snaps)
                relist.read(snaps)
                self.note(snaps)
                await listing.add(snaps)
                return got.total

            sweep = await sweep_pages(
                self.first_number,
                size,
                page,
                _same,
                self.lists.limit,
                self.status_totals.get(status),
                max_total=self.max_entities,
                api=self.api,
            )
            if not self.filter_ignored:
                self.status_totals[status] = sweep.total

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(count, self.lists.limit)):
                    tg.start_soon(relist_worker)
                for status in self.live_statuses if self.status_filter else ():
                    tg.start_soon(status_list, status)
        except BaseException:
            # the slice is read again next cycle: a failed cycle leaves no page of the pass unread
            relist.next_number = min(relist.next_number, slice_numbers.start)
            raise
        if self.filter_ignored:
            return  # what the lists missed says nothing now: the next cycle is a full sweep

        # 2. live entities none of those lists returned (they left a live status, or moved while
        # the lists were read; without a status filter, every live one the slice did not read), and
        # what the adapter must have read; one window's share a round
        assert self.live is not None
        wanted = (self.live - seen) | {i for i in must_read if i not in read_in_cycle}
        batch = self.by_id_batch
        leavers = self._leavers(sorted(wanted), self._by_id_share() * batch)
        batches = iter([leavers[i : i + batch] for i in range(0, len(leavers), batch)])
        found: set[str] = set()
        unread: set[str] = set()

        async def by_id_worker() -> None:
            for ids in batches:
                got = await read_ids(ids)
                self.counts[ReadKind.BY_ID] += 1
                asked = set(ids)
                snaps = [snap for snap in got.found if snap.id in asked]
                found.update(snap.id for snap in snaps)
                unread.update(got.unread)
                read_in_cycle.update(snap.id for snap in snaps)
                relist.read(snaps)
                self.note(snaps)
                await listing.add(snaps)

        async with anyio.create_task_group() as tg:
            for _ in range(min(-(-len(leavers) // batch), self.by_id.limit)):
                tg.start_soon(by_id_worker)
        # an entity no read returned is no longer followed here; only the relist may find it gone
        self.live.difference_update(i for i in leavers if i not in found and i not in unread)

    def _by_id_share(self) -> int:
        """Reads by id one round makes at most: one window's share of their budget."""
        return max(1, math.floor(self.by_id.per_sharer()))

    def _leavers(self, wanted: list[str], most: int) -> list[str]:
        """Up to ``most`` of the sorted ``wanted`` ids; when they do not all fit, each round goes on
        after the last id the round before read, so every one takes its turn."""
        if len(wanted) <= most:
            self._last_leaver = None
            return wanted
        start = 0 if self._last_leaver is None else bisect.bisect_right(wanted, self._last_leaver)
        chosen = (wanted[start:] + wanted[:start])[:most]
        self._last_leaver = chosen[-1]
        return chosen

    async def _confirm_missing(self, committed: SourceState, listing: Listing, read_ids: ReadIds) -> None:
        """The known entities the finished pass and the reads of its span did not return, read by id.

        While paging, the listing may have shifted (an entity deleted on a page already read moves
        the next one back across the border): such an entity was skipped, not deleted. Only one the
        vendor does not return when asked by id is gone; one it returns is read (so the staleness
        bound holds for it too); one whose read failed leaves the pass incomplete. One window's
        share of reads by id per cycle: more wait for the next cycle, the pass still open.
        """
        relist = self.relist
        if relist.ended_short:
            return  # incomplete whatever the reads by id say
        kind, by_id, gone = self.kind.value, relist.by_id, relist.gone
        missing = sorted(
            entity_id
            for entity_id, entity in committed.entities.items()
            if entity.kind == kind
            and entity.state != VANISHED
            and entity_id not in by_id
            and entity_id not in gone
        )
        batch = self.by_id_batch
        asked = missing[: self._by_id_share() * batch]
        batches = iter([asked[i : i + batch] for i in range(0, len(asked), batch)])
        unread: set[str] = set()
        unaskable: set[str] = set()

        async def worker() -> None:
            for ids in batches:
                got = await read_ids(ids)
                self.counts[ReadKind.BY_ID] += 1
                wanted = set(ids)
                snaps = [snap for snap in got.found if snap.id in wanted]
                unread.update(got.unread)
                unaskable.update(got.unaskable)
                relist.read(snaps)
                self.note(snaps)
                await listing.add(snaps)
                answered = wanted.difference(got.unread, got.unaskable)
                gone.update(answered.difference(snap.id for snap in snaps))

        async with anyio.create_task_group() as tg:
            for _ in range(min(-(-len(asked) // batch), self.by_id.limit)):
                tg.start_soon(worker)
        if unaskable and relist.consistent:
            # no read by id can tell: a pass whose pages agree says they are gone, as it always did
            gone.update(unaskable)
            unaskable.clear()
        self._confirming = not unread and not unaskable and len(asked) < len(missing)
        relist.confirmed = not unread and not unaskable and not self._confirming

    def _mismatched(self, status: str, wrong: list[EntitySnapshot]) -> None:
        """Entities a list filtered by ``status`` returned with another status: each is taken as it
        says; one returned with the very status it had when the cycle began means the filter is
        not applied, and the source reads full listings for a cool-down."""
        entities = self._committed.entities
        ignored = 0
        for snap in wrong:
            old = entities.get(snap.id)
            ignored += old is not None and old.raw == snap.raw_state
        counts = self.mismatches
        if ignored < len(wrong):
            counts[Mismatch.MOVED] = counts.get(Mismatch.MOVED, 0) + len(wrong) - ignored
        if not ignored:
            return
        counts[Mismatch.IGNORED] = counts.get(Mismatch.IGNORED, 0) + ignored
        if not self.filter_ignored:
            self.filter_ignored = True
            seconds = self.trust.distrust()
            log.warning(
                "a status-filtered listing returned entities of other statuses they already had: each "
                "is taken as it says, and the source reads full listings for %.0f s (strike %d)",
                seconds,
                self.trust.strikes,
                extra={"vendor": self.vendor, "account": self.account, "api": self.api, "status": status},
            )
