"""Tencent CCC reads that follow what can change, against the real simulator over loopback.

``DescribeAutoCalloutTasks`` has no status filter, so once an app's tasks are known each cycle reads
its live tasks one by one (``DescribeAutoCalloutTask``) and a slice of a relist spread over
``max_staleness``. What must hold, from the simulator's own request log: which reads a cycle made;
a change of a live task is seen the next cycle, and a finished task the vendor restarts within the
relist; a task's own read gives the very snapshot the listing gives (the source alternates between
the two without an event); only a complete relist vanishes a task; the calls reuse the task reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

import aiohttp
import pytest

from poller.config import ConfigError
from poller.pipeline.differ import diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import Observation
from poller.pipeline.state import SourceState
from poller.simulators.base import Fault, ListingRead
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.transport import LimiterRegistry
from poller.vendors import VENDORS
from poller.vendors.base import AdapterContext, Source
from poller.vendors.informer import ReadKind
from poller.vendors.tencent_ccc import (
    CDR_API,
    LIST_API,
    LIVE_STATES,
    STATES,
    TASK_API,
    TencentCccAccount,
    TencentCccSource,
    normalize_read,
)
from schemas import CallFinished, TaskAppeared, TaskStatusChanged
from schemas.vendors.tencent_ccc import DescribeAutoCalloutTaskResult
from tests.helpers import make_config
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source
from tests.vendors.relist import removed_ones_vanish_only_by_a_complete_relist

APP = 1400000077
LIMIT = 40
PAGE = 10
TASKS = 600  # more pages than a window's share: the targeted reads pay
LIVE = 20  # well under the listing's pages: reading them one by one is cheaper
#: DescribeAutoCalloutTask's limit where a test's first unknown session has every task read (the
#: finished ones too, new to the poller): the test waits for that learn round, not for the limit
LEARN_LIMIT = 400
SOURCE = SourceId(vendor="tencent-ccc", account="tc-main", scope=str(APP))


def world(sim: TencentCccSimulator, live: int = LIVE, tasks: int = TASKS) -> tuple[list[int], list[int]]:
    """Finished tasks first, the running ones last (the first relist slices do not reach them)."""
    finished = [sim.add_task(APP, state=2, callees=1) for _ in range(tasks - live)]
    running = [sim.add_task(APP, state=1, callees=3) for _ in range(live)]
    return finished, running


def entry(sim: TencentCccSimulator, **extra: object) -> dict[str, object]:
    return tencent_source(
        sim,
        [APP],
        **{
            "page_size": PAGE,
            "calls": False,
            "retries": 0,
            "rate_limits": {LIST_API: LIMIT, TASK_API: LIMIT, CDR_API: LIMIT},
            # the simulator shares the test's event loop: on a loaded machine it stamps arrivals late
            "rate_limit_margin": 0.1,
            **extra,
        },
    )


class Reads:
    """What the source reported of each cycle's reads (what the service's metrics are given)."""

    def __init__(self) -> None:
        self.cycles: list[tuple[str, str, str, dict[str, int]]] = []

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
    ) -> None:
        self.cycles.append((vendor, account, scope, dict(requests)))


@asynccontextmanager
async def source_of(
    sim: TencentCccSimulator, reads: Reads | None = None, **extra: object
) -> AsyncIterator[Source]:
    config = make_config("nats://127.0.0.1:1", [entry(sim, **extra)])
    async with aiohttp.ClientSession() as http:
        ctx = AdapterContext(http=http, limiters=LimiterRegistry(), backoff_base=0.01, observe_reads=reads)
        (source,) = VENDORS["tencent-ccc"].sources(config.sources[0], ctx)
        yield source


async def step(source: Source, state: SourceState) -> tuple[Observation, SourceState, list[object]]:
    """One cycle of the source and the state the service would commit after it."""
    observation = await source.observe(state)
    result = diff(SOURCE, state, observation, datetime.now(UTC), Privacy())
    return observation, result.state, list(result.events)


def pages(reads: list[ListingRead]) -> list[ListingRead]:
    return [r for r in reads if r.api == LIST_API]


def by_id(reads: list[ListingRead]) -> list[str]:
    return [dict(r.filters)["TaskId"] for r in reads if r.api == TASK_API]


def test_live_states_are_the_states_that_are_not_terminal() -> None:
    assert set(LIVE_STATES) == {raw for raw, state in STATES.mapping.items() if not state.terminal}


def test_targeted_reads_and_max_staleness_are_configurable() -> None:
    base = {"vendor": "tencent-ccc", "account": "t", "secret_id": SECRET_ID, "secret_key": SECRET_KEY}
    base["sdk_app_ids"] = [APP]  # type: ignore[assignment]
    for bad in (0, 0.5, -1, 100_000, "soon"):
        with pytest.raises(ConfigError, match="max_staleness"):
            make_config("nats://127.0.0.1:1", [{**base, "max_staleness": bad}])
    with pytest.raises(ConfigError, match="targeted_reads"):
        make_config("nats://127.0.0.1:1", [{**base, "targeted_reads": "sometimes"}])
    (account,) = make_config(
        "nats://127.0.0.1:1", [{**base, "max_staleness": 30, "targeted_reads": False}]
    ).sources
    assert isinstance(account, TencentCccAccount) and account.max_staleness == 30
    assert not account.targeted_reads
    (default,) = make_config("nats://127.0.0.1:1", [base]).sources
    assert isinstance(default, TencentCccAccount) and default.targeted_reads and default.max_staleness == 300


def test_a_tasks_own_read_keeps_what_it_cannot_tell_as_listed() -> None:
    """No CalleeCount in the answer (Callees need not be as many): the listed count stays, and the
    listed name when the answer has none."""
    answer = DescribeAutoCalloutTaskResult(State=5, Name=None, Callees=[])
    snap = normalize_read(answer, "1234", APP, listed_name="spring", listed_total=70)
    assert (snap.id, snap.parent_id, snap.name, snap.raw_state, snap.state.value, snap.total) == (
        "1234",
        str(APP),
        "spring",
        "5",
        "paused",
        70,
    )


async def test_a_task_read_both_ways_gives_equal_snapshots() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        # the listing's count is the vendor's own: a task whose callees list is shorter still
        # gives the listed count from its own read
        sim.apps[APP].tasks[live[3]].callee_count = 99
        sim.set_state(APP, live[4], 5)
        sim.set_state(APP, live[5], 0)
        sim.set_state(APP, live[6], 3)
        async with source_of(sim) as source:
            listed, state, _ = await step(source, SourceState())
            mark = len(sim.listing_reads)
            read, _, events = await step(source, state)
            reads = sim.listing_reads[mark:]
    assert listed.complete and not read.complete
    read_by_id = set(by_id(reads))
    assert read_by_id == {str(t) for t in live}  # the first relist slice reads none of them
    before = {snap.id: snap for snap in listed.entities}
    after = {snap.id: snap for snap in read.entities}
    for task in read_by_id:
        assert after[task] == before[task], task
    assert after[str(live[3])].total == 99
    assert events == []


async def test_a_targeted_cycle_reads_live_tasks_by_id_and_a_relist_slice_not_the_listing() -> None:
    reads_seen = Reads()
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with source_of(sim, reads_seen) as source:
            first, state, _ = await step(source, SourceState())
            sim.set_state(APP, live[1], 2)  # a live task finishes
            mark = len(sim.listing_reads)
            second, state, events = await step(source, state)
            second_reads = sim.listing_reads[mark:]
            mark = len(sim.listing_reads)
            _, state, third_events = await step(source, state)
            third_reads = sim.listing_reads[mark:]
    assert first.complete and not second.complete
    # every live task by id, once, and a few pages of the relist, not the whole listing
    assert Counter(by_id(second_reads)) == {str(t): 1 for t in live}
    listed = pages(second_reads)
    assert 0 < len(listed) < TASKS // PAGE
    assert [r.page for r in listed] == list(range(len(listed)))  # the relist starts at page 0
    changes = [
        (e.entity_id, e.previous.raw, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)
    ]
    assert changes == [(str(live[1]), "1", "2")]
    # finished now: not read by id any more; the relist goes on where it stopped
    assert set(by_id(third_reads)) == {str(t) for t in live if t != live[1]}
    assert pages(third_reads)[0].page == len(listed)
    assert third_events == []
    # what the metrics are told: a full listing first, then reads by id and the relist
    assert [cycle[:3] for cycle in reads_seen.cycles] == [("tencent-ccc", "tc-main", str(APP))] * 3
    full, targeted, _ = (cycle[3] for cycle in reads_seen.cycles)
    assert full == {ReadKind.FULL: TASKS // PAGE}
    assert targeted == {ReadKind.RELIST: len(listed), ReadKind.BY_ID: LIVE}


async def test_more_live_tasks_than_a_rounds_share_take_turns() -> None:
    share = 5
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        limits = {LIST_API: LIMIT // 2, TASK_API: share, CDR_API: LIMIT}
        async with source_of(sim, rate_limits=limits) as source:
            _, state, _ = await step(source, SourceState())
            rounds: list[list[str]] = []
            for _ in range(3):  # before the relist slices reach the live tasks' pages
                mark = len(sim.listing_reads)
                _, state, _ = await step(source, state)
                rounds.append(by_id(sim.listing_reads[mark:]))
    assert [len(ids) for ids in rounds] == [share] * 3
    read = [task for ids in rounds for task in ids]
    assert len(set(read)) == len(read) and set(read) <= {str(t) for t in live}


async def test_alternating_relist_and_per_task_reads_of_an_unchanged_world_publish_no_events() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        world(sim)
        async with source_of(sim, max_staleness=4.0) as source:
            _, state, first_events = await step(source, SourceState())
            events: list[object] = []
            completed = 0
            for _ in range(40):
                observation, state, cycle_events = await step(source, state)
                events.extend(cycle_events)
                completed += observation.complete
                if completed == 2:
                    break
            reads = sim.listing_reads
    assert len([e for e in first_events if isinstance(e, TaskAppeared)]) == TASKS
    assert completed == 2, "the relist never completed twice"
    assert events == []
    assert by_id(reads) and len(pages(reads)) > 2 * (TASKS // PAGE)
    assert sum(1 for e in state.entities.values() if e.state != "vanished") == TASKS


async def test_a_finished_task_the_vendor_restarts_is_seen_within_the_relist() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        finished, _ = world(sim)
        async with source_of(sim, max_staleness=4.0) as source:
            _, state, _ = await step(source, SourceState())
            _, state, _ = await step(source, state)
            sim.set_state(APP, finished[-1], 1)  # near the listing's end: the relist reads it last
            seen_at: int | None = None
            complete_at: int | None = None
            for cycle in range(40):
                mark = len(sim.listing_reads)
                observation, state, events = await step(source, state)
                if observation.complete and complete_at is None:
                    complete_at = cycle
                if any(isinstance(e, TaskStatusChanged) and e.entity_id == str(finished[-1]) for e in events):
                    seen_at = cycle
                    break
            assert seen_at is not None and complete_at in (None, seen_at), (seen_at, complete_at)
            # running again: from now on it is read by id every cycle
            mark = len(sim.listing_reads)
            await step(source, state)
            assert str(finished[-1]) in by_id(sim.listing_reads[mark:])


async def test_only_a_complete_relist_vanishes_a_task() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        finished, live = world(sim)
        async with source_of(sim, max_staleness=4.0) as source:

            def remove() -> None:
                # a live task whose own read now says it does not exist, and a finished one
                sim.remove_task(APP, live[0])
                sim.remove_task(APP, finished[0])

            state, vanished_at = await removed_ones_vanish_only_by_a_complete_relist(
                partial(step, source), remove, {str(live[0]), str(finished[0])}
            )
    assert vanished_at > 2
    assert sum(1 for e in state.entities.values() if e.state != "vanished") == TASKS - 2


async def test_a_task_whose_own_read_fails_stays_followed() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with source_of(sim) as source:
            _, state, _ = await step(source, SourceState())
            sim.inject(Fault.SERVER_ERROR, api=TASK_API, remaining=1)
            mark = len(sim.listing_reads)
            failing, state, events = await step(source, state)
            failed = {str(t) for t in live} - set(by_id(sim.listing_reads[mark:]))
            mark = len(sim.listing_reads)
            _, _, _ = await step(source, state)
            next_reads = set(by_id(sim.listing_reads[mark:]))
    assert len(failed) == 1 and events == []
    assert not failing.complete
    assert failed <= next_reads  # read again by id the next cycle


async def test_a_small_app_is_swept_whole() -> None:
    """A listing that fits in one window's share gains nothing from reads by id."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        world(sim, live=5, tasks=100)
        async with source_of(sim) as source:
            _, state, _ = await step(source, SourceState())
            mark = len(sim.listing_reads)
            second, _, _ = await step(source, state)
            reads = sim.listing_reads[mark:]
    assert second.complete and not by_id(reads) and len(pages(reads)) == 10


async def test_many_live_tasks_stay_with_full_listings() -> None:
    """As many live tasks as listing pages: reading each of them costs more than the listing."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        world(sim, live=TASKS // PAGE)
        async with source_of(sim) as source:
            _, state, _ = await step(source, SourceState())
            mark = len(sim.listing_reads)
            second, _, _ = await step(source, state)
            reads = sim.listing_reads[mark:]
    assert second.complete and not by_id(reads) and len(pages(reads)) == TASKS // PAGE


async def test_without_targeted_reads_every_cycle_is_one_full_listing() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with source_of(sim, targeted_reads=False) as source:
            first, state, _ = await step(source, SourceState())
            sim.set_state(APP, live[0], 5)
            mark = len(sim.listing_reads)
            second, _, events = await step(source, state)
            reads = sim.listing_reads[mark:]
    assert second.complete and not by_id(reads) and len(pages(reads)) == TASKS // PAGE
    # a full listing hands unchanged tasks back as the very snapshots built before
    before = {snap.id: snap for snap in first.entities}
    reused = [snap.id for snap in second.entities if snap is before[snap.id]]
    assert len(reused) == TASKS - 1 and str(live[0]) not in reused
    assert [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)] == [
        (str(live[0]), "5")
    ]


# -- calls ------------------------------------------------------------------------------------------
async def test_calls_reuse_the_task_reads_and_the_cursor_waits_for_a_complete_relist() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        extra = {"calls": True, "max_staleness": 4.0, "cdr_settle": 0, "cdr_full_every": 1}
        async with source_of(sim, **extra) as source:
            first, state, _ = await step(source, SourceState())
            assert first.complete and "cdr.until" in first.cursors
            call = sim.place_call(APP, live[2], end_status=(1, "ok"))
            cycles: list[tuple[Observation, list[str], list[object]]] = []
            for _ in range(40):
                mark = len(sim.listing_reads)
                observation, state, events = await step(source, state)
                cycles.append((observation, by_id(sim.listing_reads[mark:]), events))
                if observation.complete:
                    break
    published = [e for _, _, events in cycles for e in events if isinstance(e, CallFinished)]
    assert [(c.call_id, c.task_id) for c in published] == [(call.SessionId, str(live[2]))]
    # no task was read twice in one cycle: the reads by id told the sessions too
    for _, reads, _ in cycles:
        assert max(Counter(reads).values(), default=1) == 1
    # the cursor moves only in the cycle that completed the relist
    assert cycles[-1][0].complete, "the relist never completed"
    assert all("cdr.until" not in o.cursors for o, _, _ in cycles[:-1])
    assert cycles[-1][0].cursors["cdr.until"] >= first.cursors["cdr.until"]


async def test_a_seats_own_call_holds_no_task_read_and_is_decided_once_the_reads_came_after_it() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        sim.rate_limits[TASK_API] = LEARN_LIMIT
        limits = {LIST_API: LIMIT, TASK_API: LEARN_LIMIT, CDR_API: LIMIT}
        async with source_of(sim, calls=True, max_staleness=4.0, cdr_settle=0, rate_limits=limits) as source:
            _, state, _ = await step(source, SourceState())
            sim.manual_call(APP)
            calls: list[object] = []
            reads: list[list[str]] = []
            complete = None
            for _ in range(40):
                mark = len(sim.listing_reads)
                observation, state, events = await step(source, state)
                calls.extend(e for e in events if isinstance(e, CallFinished))
                reads.append(by_id(sim.listing_reads[mark:]))
                if observation.complete:
                    complete = observation
                    break
    assert calls == []
    assert complete is not None, "the relist never completed"
    # the tasks that can still place calls were read once for the unknown session (the live ones by
    # id, the ones finished since the cursor last moved to learn their sessions), then only the live
    # ones: a task read after the session ended that does not list it does not own it
    assert {str(t) for t in live} <= set(reads[0])
    assert all(set(cycle) <= {str(t) for t in live} for cycle in reads[1:])
    assert all(max(Counter(cycle).values(), default=1) == 1 for cycle in reads)


async def test_a_call_placed_after_its_tasks_read_is_not_taken_for_a_seats_own() -> None:
    """A record whose session its task's read (earlier in the cycle) could not list yet: in the
    cycle that completes the relist it is left undecided, not a seat's own call, and the next
    cycle's read of the task tells whose it is."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=LIMIT) as sim:
        first = sim.add_task(APP, state=1, callees=3)  # on page 0: the slice ending a pass reads the last
        world(sim)
        sim.rate_limits[TASK_API] = LEARN_LIMIT
        limits = {LIST_API: LIMIT, TASK_API: LEARN_LIMIT, CDR_API: LIMIT}
        extra = {
            "calls": True,
            "max_staleness": 1.0,
            "cdr_settle": 0,
            "cdr_full_every": 0.5,
            "rate_limits": limits,
        }
        async with source_of(sim, **extra) as source:
            assert isinstance(source, TencentCccSource)
            _, state, _ = await step(source, SourceState())
            for _ in range(20):  # up to the cycle whose relist slice ends the pass
                remaining = source.informer.relist.remaining(PAGE)
                if remaining is not None and 0 < remaining <= LIMIT:
                    break
                _, state, _ = await step(source, state)
            call = sim.place_call(APP, first, end_status=(1, "ok"))
            (callee,) = [c for c in sim.apps[APP].tasks[first].callees if call.SessionId in c.sessions]
            callee.sessions.remove(call.SessionId)  # the task's read in this cycle does not list it
            ending, state, ending_events = await step(source, state)
            callee.sessions.append(call.SessionId)
            after, state, after_events = await step(source, state)
    assert ending.complete  # a cycle that could take the record for a seat's own call
    assert not [e for e in ending_events if isinstance(e, CallFinished)]
    assert ending.cursors.get("cdr.until", 0) < (call.EndedTimestamp or 0)
    published = [(e.call_id, e.task_id) for e in after_events if isinstance(e, CallFinished)]
    assert published == [(call.SessionId, str(first))]
    assert not after.complete
