"""Each page's changes are published as soon as the page is read, not at the end of the sweep."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import nats

from poller.pipeline.differ import SweepDiff, diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import SourceState
from poller.simulators.base import Fault
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from poller.vendors.listing import Listing
from schemas import EntityKind, TaskAppeared, TaskState, TaskStatusChanged, TaskVanished
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000001
SOURCE = SourceId(vendor="tencent-ccc", account="a", scope="1")
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def task(i: int, raw: str, state: TaskState = TaskState.RUNNING) -> EntitySnapshot:
    return EntitySnapshot(kind=EntityKind.TASK, id=str(i), state=state, raw_state=raw, name=f"t{i}")


def test_pages_applied_one_by_one_give_the_events_of_one_whole_diff() -> None:
    before = diff(
        SOURCE,
        SourceState(),
        Observation(entities=[task(i, "1") for i in range(6)], complete=True),
        NOW,
        Privacy(),
    )
    pages = [[task(0, "5", TaskState.PAUSED), task(1, "1")], [task(2, "1"), task(9, "1")], [task(4, "1")]]
    whole = diff(
        SOURCE,
        before.state,
        Observation(entities=[s for p in pages for s in p], complete=True),
        NOW,
        Privacy(),
    )

    sweep = SweepDiff(SOURCE, before.state, Privacy())
    streamed = [event for page in pages for event in sweep.apply(page, NOW)]
    # the final observation holds every snapshot again: those already applied are not diffed twice
    finished = sweep.finish(Observation(entities=[s for p in pages for s in p], complete=True), NOW)

    assert [type(e) for e in streamed] == [TaskStatusChanged, TaskAppeared]
    assert [type(e) for e in finished.events] == [TaskVanished, TaskVanished]  # 3 and 5: only at the end
    assert msgspec.json.encode(streamed + finished.events) == msgspec.json.encode(whole.events)
    assert finished.state.entities == whole.state.entities
    assert finished.changed == whole.changed


def test_an_unfinished_sweep_keeps_what_it_applied_and_never_reports_a_vanish() -> None:
    before = diff(
        SOURCE,
        SourceState(),
        Observation(entities=[task(i, "1") for i in range(3)], complete=True),
        NOW,
        Privacy(),
    )
    sweep = SweepDiff(SOURCE, before.state, Privacy())
    assert len(sweep.apply([task(0, "2", TaskState.COMPLETED)], NOW)) == 1
    sweep.published(41)
    kept = sweep.unfinished()
    assert kept.events == []
    assert kept.state.entities["0"].raw == "2" and kept.state.entities["1"].raw == "1"
    assert kept.state.stream_seq == 41
    assert kept.changed == {"0"}


async def test_listing_streams_each_page_and_keeps_the_last_sighting() -> None:
    pages: list[list[str]] = []

    async def early(snapshots: Sequence[EntitySnapshot]) -> None:
        pages.append([s.raw_state for s in snapshots])

    listing = Listing(early)
    await listing.add([task(1, "1"), task(2, "1")])
    await listing.add([task(2, "5")])  # moved between pages while paging
    await listing.add([])
    assert pages == [["1", "1"], ["5"]]
    assert [(s.id, s.raw_state) for s in listing.snapshots()] == [("1", "1"), ("2", "5")]


async def test_first_pages_are_published_before_the_sweep_ends(nats_server: NatsServer) -> None:
    """12 pages at 4 requests/s: a sweep takes about 3 s; the first page's tasks arrive long before."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=3) as sim:
        for _ in range(36):
            sim.add_task(APP, state=1)
        source = tencent_source(sim, [APP], rate_limits={"DescribeAutoCalloutTasks": 4}, poll_interval=60)
        received: list[float] = []
        nc = await nats.connect(nats_server.url)
        try:

            async def on_event(msg: object) -> None:
                received.append(time.monotonic())

            await nc.subscribe("aicc.tencent-ccc.>", cb=on_event)
            async with running(make_config(nats_server.url, [source])) as service:
                await polls_done(service, 1)
        finally:
            await nc.close()
        requests = sim.log.times("DescribeAutoCalloutTasks")
    assert len(received) == 36
    assert len(requests) == 12
    # the first events were in a subscriber's hands before the last page was even requested
    assert min(received) < max(requests) - 1.0
    events = await stream_events(nats_server.url)
    assert all(isinstance(e, TaskAppeared) for e in events) and len(events) == 36


async def test_a_sweep_failing_midway_keeps_its_published_pages_without_repeating_them(
    nats_server: NatsServer,
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=4) as sim:
        tasks = [sim.add_task(APP, state=0) for _ in range(9)]  # 3 pages of 3
        # one cycle a second: the changes and the fault below land between two sweeps, not inside one
        limits = {"DescribeAutoCalloutTasks": 50}
        config = make_config(
            nats_server.url, [tencent_source(sim, [APP], rate_limits=limits, poll_interval=1.0)]
        )
        async with running(config) as service:
            await polls_done(service, 1)
            sim.set_state(APP, tasks[0], 1)  # on the first page
            sim.set_state(APP, tasks[8], 1)  # on the last
            # every request after the first page fails until cleared: the sweep fails after page 0
            sim.inject(Fault.SERVER_ERROR, after=1)
            await wait_until(lambda: any(s.degraded for s in service.statuses.values()), timeout=10)
            changes = [e for e in await stream_events(nats_server.url) if isinstance(e, TaskStatusChanged)]
            assert [e.entity_id for e in changes] == [str(tasks[0])]  # published although the sweep failed
            sim.clear_faults()
            await polls_done(service, 2)
        events = await stream_events(nats_server.url)
    changes = [e for e in events if isinstance(e, TaskStatusChanged)]
    # the first page's change once, the last page's change after recovery; nothing vanished
    assert sorted((e.entity_id, e.previous.raw, e.current.raw) for e in changes) == sorted(
        [(str(tasks[0]), "0", "1"), (str(tasks[8]), "0", "1")]
    )
    assert not any(isinstance(e, TaskVanished) for e in events)
    assert len({e.event_id for e in events}) == len(events)
    assert [type(e).__name__ for e in events].count("SourceDegraded") == 1


async def test_a_sweep_with_the_last_total_requests_every_page_at_once_and_follows_growth() -> None:
    from poller.vendors.listing import sweep_pages

    listing = list(range(25))  # 5 pages of 5
    requested: list[int] = []

    async def fetch(number: int) -> tuple[int, list[int]]:
        requested.append(number)
        return len(listing), listing[number * 5 : number * 5 + 5]

    first = await sweep_pages(0, 5, fetch, lambda page: page[0], max_total=1000, api="list")
    assert requested[0] == 0 and sorted(requested) == [0, 1, 2, 3, 4] and first.total == 25
    listing.extend(range(25, 37))  # grew to 8 pages since
    requested.clear()
    grown = await sweep_pages(
        0, 5, fetch, lambda page: page[0], expected_total=first.total, max_total=1000, api="list"
    )
    assert sorted(requested) == list(range(8))
    assert [x for _, items in grown.pages for x in items] == listing and grown.totals_agree
    del listing[10:]  # shrank to 2 pages: the extra pages come back empty, the listing is still whole
    requested.clear()
    shrunk = await sweep_pages(
        0, 5, fetch, lambda page: page[0], expected_total=grown.total, max_total=1000, api="list"
    )
    assert sorted(requested) == list(range(8))
    assert [x for _, items in shrunk.pages for x in items] == listing and shrunk.total == 10
