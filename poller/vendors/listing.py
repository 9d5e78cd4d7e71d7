"""The listing template the paged adapters share: every page of a sweep, and its snapshots by id."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import anyio
import msgspec

from poller.errors import TooLarge
from poller.pipeline.snapshot import EntitySnapshot, PageSink

__all__ = ["Listing", "SeenItems", "Sweep", "sweep_pages"]


_id_of = operator.attrgetter("id")


class Listing:
    """The snapshots of one sweep by id, each page streamed to ``early`` as it arrives.

    Pages may be read concurrently and an entity that moved while paging can appear twice; the last
    page read wins. The service diffs and publishes each streamed page at once, then diffs the final
    :class:`Observation`, skipping the snapshot objects it has already applied.

    The pages are kept as they came with a set of their ids: on a sweep where no id comes twice
    (the usual one) the snapshots by id are the pages end to end, and a map by id is built only
    for a sweep where one did.
    """

    def __init__(self, early: PageSink | None) -> None:
        self._pages: list[tuple[EntitySnapshot, ...]] = []
        self._ids: set[str] = set()
        self._count = 0
        self._early = early

    async def add(self, snapshots: Iterable[EntitySnapshot]) -> None:
        page = self.keep(snapshots)
        if self._early is not None and page:
            await self._early(page)

    def keep(self, snapshots: Iterable[EntitySnapshot]) -> tuple[EntitySnapshot, ...]:
        """Record a page without streaming it (what :meth:`add` does first).

        Kept as a tuple: the differ keeps the same page without copying it, and the collector stops
        walking a tuple of objects it does not track.
        """
        page = snapshots if isinstance(snapshots, tuple) else tuple(snapshots)
        self._pages.append(page)
        self._ids.update(map(_id_of, page))  # in C: a page is 100s of snapshots
        self._count += len(page)
        return page

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._ids

    def snapshots(self) -> list[EntitySnapshot]:
        """The last snapshot of each id, in the order the ids first came."""
        flat = list(itertools.chain.from_iterable(self._pages))
        if self._count == len(self._ids):  # no id came twice: the pages end to end are that
            return flat
        return list(dict(zip(map(_id_of, flat), flat, strict=True)).values())


def _where(flags: list[bool], flag: bool) -> Iterator[int]:
    """The positions of ``flag`` in ``flags``, found in C: for the few in a page."""
    at = -1
    while True:
        try:
            at = flags.index(flag, at + 1)
        except ValueError:
            return
        yield at


class SeenItems:
    """The snapshot built from each listed item, keyed by the item's raw JSON bytes.

    On a steady sweep almost every item is byte for byte what it was: its snapshot is reused without
    decoding or normalizing it again, and the differ skips it as the very object it applied last
    cycle (:class:`~poller.pipeline.differ.Basis`). ``build`` must depend on the bytes alone: a
    snapshot is reused for the same bytes whenever they come back.

    The key is the hash of the item's bytes (not the bytes: they would cost more memory than the
    entity's state); Python's hash of bytes is keyed per process, so a vendor cannot aim at a
    collision, and the odds of a chance one are in docs/performance.md.

    A page whose items all hash as those of the last sweep's page that began with the same item
    is that page again: the same tuple of snapshots is handed out, without a look-up per item.

    Nothing is rebuilt per sweep: only changed items add an entry. Entries no sweep lists any more
    are pruned once they are more than ``SLACK`` of what a complete sweep listed: the next sweep
    then also records what it lists, and if it completes, that record is the map from then on. So
    the map stays within that share above the listing, and the record is rare on steady sweeps.
    """

    #: what a complete sweep lets stale entries grow to, as a share of what it listed, before pruning
    SLACK = 0.25

    def __init__(self) -> None:
        self._built: dict[int, EntitySnapshot] = {}
        #: the last sweep's pages by the key of their first item: their keys, and their snapshots
        self._pages: dict[int, tuple[tuple[int, ...], tuple[EntitySnapshot, ...]]] = {}
        #: this sweep's pages, the same way
        self._listed_pages: dict[int, tuple[tuple[int, ...], tuple[EntitySnapshot, ...]]] = {}
        #: how many items this sweep listed
        self._listed = 0
        #: what this sweep lists, when it is the one that prunes (None: it is not)
        self._record: dict[int, EntitySnapshot] | None = None

    def snapshots(
        self, items: Sequence[msgspec.Raw], build: Callable[[msgspec.Raw], EntitySnapshot]
    ) -> tuple[EntitySnapshot, ...]:
        """One snapshot per item, in order: the one already built where the bytes are the same.

        Hashing and looking up run in C over the whole page; only the changed items are built.
        """
        keys = tuple(map(hash, map(bytes, items)))
        if not keys:
            return ()
        last = self._pages.get(keys[0])
        if last is not None and last[0] == keys:
            page = last[1]
            self._listed_pages[keys[0]] = last  # its keys are the ones the map holds
        else:
            found: list[EntitySnapshot | None]
            if last is None:
                found = list(map(self._built.get, keys))
            else:
                # the same page with a few items changed: where the keys are the same, so are the
                # snapshots; only the others are looked up
                found = [*last[1][: len(keys)], *itertools.repeat(None, len(keys) - len(last[1]))]
                same = [*map(operator.eq, keys, last[0]), *itertools.repeat(False, len(keys) - len(last[0]))]
                for i in _where(same, False):
                    found[i] = self._built.get(keys[i])
            built, missing = self._built, list(map(operator.is_, found, itertools.repeat(None)))
            count = missing.count(True)
            for i in range(len(keys)) if count == len(keys) else _where(missing, True) if count else ():
                snap = build(items[i])
                found[i] = built[keys[i]] = snap
            page = tuple(cast(list[EntitySnapshot], found))
            self._listed_pages[keys[0]] = (keys, page)
        self._listed += len(page)
        if self._record is not None:
            self._record.update(zip(keys, page, strict=True))
        return page

    def end_sweep(self, complete: bool) -> None:
        """A complete sweep prunes, or asks the next to; a partial one forgets nothing."""
        if complete:
            self._pages = self._listed_pages
        else:
            self._pages.update(self._listed_pages)
        self._listed_pages = {}
        if complete and self._record is not None:
            self._built, self._record = self._record, None
        elif complete and len(self._built) > self._listed + self.SLACK * self._listed:
            self._record = {}
        elif self._record is not None:
            self._record = {}  # a partial record: the next sweep starts it again
        self._listed = 0

    def __len__(self) -> int:
        return len(self._built)

    def copy(self) -> SeenItems:
        other = SeenItems()
        other._built, other._listed = dict(self._built), self._listed
        other._pages, other._listed_pages = dict(self._pages), dict(self._listed_pages)
        other._record = None if self._record is None else dict(self._record)
        return other


P = TypeVar("P")


@dataclass(frozen=True)
class Sweep(Generic[P]):
    """Every page of one listing, in page order, and whether the pages agreed on the total."""

    pages: list[P]
    total: int
    totals_agree: bool


async def sweep_pages(
    first_number: int,
    page_size: int,
    fetch: Callable[[int], Awaitable[P]],
    total_of: Callable[[P], int],
    concurrency: int = 20,
    expected_total: int | None = None,
    *,
    max_total: int,
    api: str,
) -> Sweep[P]:
    """Every page of a listing, fetched by ``concurrency`` workers in page order.

    Without ``expected_total`` the first page is read alone to learn the total; with it (the last
    sweep's total) every expected page is requested at once, so back-to-back sweeps leave no idle
    round trip between them, and pages the listing grew by are fetched after.

    The limiter paces the requests; bounding the workers (to about one window's worth) keeps a big
    listing from queueing hundreds of requests at a limiter that other sources share: the limiter
    serves waiters first come first served, so a source with one page waits behind at most a window
    of another's, not behind its whole sweep.

    Entities added or moved while paging can be missed or seen twice, so a listing is complete only
    if every page reported the same total and the de-duplicated count equals it: adapters check
    that before trusting a missing entity to have vanished.

    The total is the vendor's word, so nothing is sized by it: a total above ``max_total`` (the
    source's ``max_entities``) fails the sweep with :class:`~poller.errors.TooLarge` before any
    further page is asked for, and the page numbers to fetch are a range, never a list.
    """
    pages: dict[int, P] = {}

    async def fetch_all(numbers: range) -> None:
        remaining = iter(numbers)

        async def worker() -> None:
            for number in remaining:  # one shared iterator: each page is taken by exactly one worker
                pages[number] = await fetch(number)

        async with anyio.create_task_group() as tg:
            for _ in range(min(max(1, concurrency), len(numbers))):
                tg.start_soon(worker)

    def count(total: int) -> int:
        return max(1, -(-total // page_size))

    if expected_total is None:
        pages[first_number] = await fetch(first_number)
    else:
        await fetch_all(range(first_number, first_number + count(expected_total)))
    total = total_of(pages[first_number])
    if total > max_total:
        raise TooLarge(f"the vendor reports {total} entities, more than max_entities = {max_total}", api=api)
    # the pages read so far are always first_number .. first_number + len(pages) - 1
    missing = range(first_number + len(pages), first_number + count(total))
    if missing:
        await fetch_all(missing)
    ordered = [pages[n] for n in sorted(pages)]
    return Sweep(ordered, total, len({total_of(page) for page in ordered}) == 1)
