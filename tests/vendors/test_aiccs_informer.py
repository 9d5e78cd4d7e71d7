"""AICCS reads that follow what can change, against the real simulator (and the real service).

An account of mostly finished tasks: each cycle lists the live statuses (``ListTask`` by ``Status``),
re-reads leavers by ``TaskId`` and reads a slice of a relist spread over ``max_staleness``. What must
hold, from the simulator's own request log and the stream: a change among live tasks is seen
without a full listing; a finished task the vendor changes is seen within the maximum staleness;
no second holds more requests than the API-wide limit and none is throttled; only a complete relist
vanishes anything; a vendor that ignores the filter or reports an absurd total is read safely.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from poller.config import ConfigError
from poller.errors import ClientError, TooLarge, as_source_error
from poller.pipeline.differ import diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import Observation
from poller.pipeline.state import SourceState
from poller.simulators.alibaba_aiccs import BEIJING, AiccsSimulator
from poller.simulators.base import Fault, ListingRead, max_in_window
from poller.tools.natsserver import NatsServer
from poller.vendors.alibaba_aiccs import (
    DETAIL_API,
    LIST_API,
    LIVE_STATUSES,
    AiccsAccount,
    AiccsSource,
    decode_record,
)
from poller.vendors.base import Source
from poller.vendors.informer import ReadKind
from schemas import CallFinished, TaskStatusChanged, TaskVanished
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.vendors.relist import removed_ones_vanish_only_by_a_complete_relist
from tests.vendors.test_alibaba_vendors import AK, SECRET, adapters, aiccs_source

LIMIT = 40
PAGE = 10
TASKS = 600  # more pages than a window's share: the targeted reads pay
LIVE = 20
SOURCE = SourceId(vendor="alibaba-aiccs", account="aiccs-main", scope="")


def world(sim: AiccsSimulator, owner: str | None = None) -> tuple[list[int], list[int]]:
    finished = [sim.add_task(status="DONE", total=0, owner=owner) for _ in range(TASKS - LIVE)]
    live = [sim.add_task(status="RUNNING", total=0, owner=owner) for _ in range(LIVE)]
    return finished, live


def source_entry(sim: AiccsSimulator, **extra: object) -> dict[str, object]:
    return aiccs_source(
        sim,
        **{
            "page_size": PAGE,
            "poll_interval": 0.001,
            "calls": False,
            "rate_limits": {LIST_API: LIMIT, DETAIL_API: LIMIT},
            # the simulator shares the test's event loop: on a loaded machine it stamps arrivals
            # late and bunched, as a vendor far away would
            "rate_limit_margin": 0.1,
            **extra,
        },
    )


def reads_since(sim: AiccsSimulator, mark: int) -> list[ListingRead]:
    return sim.listing_reads[mark:]


def unfiltered(reads: list[ListingRead]) -> list[ListingRead]:
    return [r for r in reads if not r.filters]


def by_status(reads: list[ListingRead]) -> list[ListingRead]:
    return [r for r in reads if [k for k, _ in r.filters] == ["Status"]]


def by_id(reads: list[ListingRead]) -> list[ListingRead]:
    return [r for r in reads if [k for k, _ in r.filters] == ["TaskId"]]


async def step(source: Source, state: SourceState) -> tuple[Observation, SourceState, list[object]]:
    """One cycle of the source and the state the service would commit after it."""
    observation = await source.observe(state)
    result = diff(SOURCE, state, observation, datetime.now(UTC), Privacy())
    return observation, result.state, list(result.events)


def test_targeted_reads_and_max_staleness_are_configurable() -> None:
    entry = {"vendor": "alibaba-aiccs", "account": "a", "access_key_id": AK, "access_key_secret": SECRET}
    for bad in (0, 0.5, -1, 100_000, "soon"):
        with pytest.raises(ConfigError, match="max_staleness"):
            make_config("nats://127.0.0.1:1", [{**entry, "max_staleness": bad}])
    (account,) = make_config(
        "nats://127.0.0.1:1", [{**entry, "max_staleness": 30, "targeted_reads": False}]
    ).sources
    assert isinstance(account, AiccsAccount) and account.max_staleness == 30
    assert not account.targeted_reads
    (default,) = make_config("nats://127.0.0.1:1", [entry]).sources
    assert isinstance(default, AiccsAccount) and default.targeted_reads and default.max_staleness == 300


async def test_simulator_filters_on_one_status_and_one_task_id_and_pages_the_filtered_list() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        finished, live = world(sim)
        sim.set_task(live[0], status="STOP")
        async with adapters(source_entry(sim)) as (source,):
            assert isinstance(source, AiccsSource)
            first = await source._page(1, "RUNNING")
            second = await source._page(2, "RUNNING")
            stopped = await source._page(1, "STOP")
            none = await source._page(1, "SYSTEM_STOP")
            one = await source._page(1, task_id=finished[3])
            both = await source._page(1, "RUNNING", finished[3])
            with pytest.raises(ClientError, match="ParameterError"):
                await source._page(1, "PAUSED")  # not one of the documented values
    # the adapter keeps records raw (an unchanged one is not decoded again): decode them here
    running = [decode_record(r) for r in first.Record + second.Record]
    assert (first.Total, second.Total) == (LIVE - 1, LIVE - 1)
    assert [r.Id for r in running] == live[1:]
    assert {r.Status for r in running} == {"RUNNING"}
    assert [decode_record(r).Id for r in stopped.Record] == [live[0]] and stopped.Total == 1
    assert none.Total == 0 and none.Record == []
    assert [(r.Id, r.Status) for r in map(decode_record, one.Record)] == [(finished[3], "DONE")]
    assert one.Total == 1
    assert both.Total == 0 and both.Record == []  # the filters combine


async def test_a_live_task_that_leaves_the_live_lists_is_read_by_task_id() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        _, live = world(sim)  # the live tasks are on the last pages: the first relist slice misses them
        async with adapters(source_entry(sim)) as (source,):
            first, state, _ = await step(source, SourceState())
            sim.set_task(live[1], status="DONE")
            mark = len(sim.listing_reads)
            second, state, events = await step(source, state)
            reads = reads_since(sim, mark)
    assert first.complete and not second.complete
    assert {e.id: e.raw_state for e in second.entities}[str(live[1])] == "DONE"
    changes = [
        (e.entity_id, e.previous.raw, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)
    ]
    assert changes == [(str(live[1]), "RUNNING", "DONE")]
    # the cycle read the live lists, one task by id and a slice of the relist, not the whole listing
    assert {dict(r.filters)["Status"] for r in by_status(reads)} == set(LIVE_STATUSES)
    assert [dict(r.filters)["TaskId"] for r in by_id(reads)] == [str(live[1])]
    assert 0 < len(unfiltered(reads)) < TASKS // PAGE
    assert len(reads) == len(unfiltered(reads)) + len(by_status(reads)) + len(by_id(reads))


async def test_without_targeted_reads_every_cycle_is_one_full_listing() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        world(sim)
        async with adapters(source_entry(sim, targeted_reads=False)) as (source,):
            _, state, _ = await step(source, SourceState())
            mark = len(sim.listing_reads)
            second, _, _ = await step(source, state)
    assert second.complete
    assert len(unfiltered(reads_since(sim, mark))) == len(reads_since(sim, mark)) == TASKS // PAGE


async def test_full_listings_hand_unchanged_tasks_back_as_the_snapshots_built_before() -> None:
    """What lets the differ skip them: the same bytes give the very snapshot of the last sweep."""
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim, targeted_reads=False)) as (source,):
            first, state, _ = await step(source, SourceState())
            sim.set_task(live[0], status="STOP")
            second, _, events = await step(source, state)
    assert first.complete and second.complete
    before = {snap.id: snap for snap in first.entities}
    reused = [snap.id for snap in second.entities if snap is before[snap.id]]
    assert len(reused) == TASKS - 1 and str(live[0]) not in reused
    changes = [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    assert changes == [(str(live[0]), "STOP")]


async def test_a_small_account_is_swept_whole() -> None:
    """A listing that fits in one window's share gains nothing from targeted reads."""
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        for _ in range(30):
            sim.add_task(status="DONE", total=0)
        sim.add_task(status="RUNNING", total=0)
        async with adapters(source_entry(sim)) as (source,):
            _, state, _ = await step(source, SourceState())
            mark = len(sim.listing_reads)
            second, _, _ = await step(source, state)
    assert second.complete and not by_status(reads_since(sim, mark))


async def test_targeted_cycles_are_partial_and_only_a_complete_relist_vanishes() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        finished, live = world(sim)
        async with adapters(source_entry(sim, max_staleness=4.0)) as (source,):

            def remove() -> None:
                sim.remove_task(live[0])  # a live task the targeted reads will not find any more
                sim.remove_task(finished[0])

            state, _ = await removed_ones_vanish_only_by_a_complete_relist(
                partial(step, source), remove, {str(live[0]), str(finished[0])}
            )
    assert sum(1 for e in state.entities.values() if e.state != "vanished") == TASKS - 2


@pytest.mark.slow
async def test_live_changes_without_a_full_sweep_and_finished_ones_within_max_staleness() -> None:
    max_staleness = 10.0
    with NatsServer() as server:
        async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
            finished, live = world(sim)
            config = make_config(server.url, [source_entry(sim, max_staleness=max_staleness)])
            async with running(config) as service:
                await polls_done(service, 2)
                labels = {"vendor": "alibaba-aiccs", "account": "aiccs-main", "scope": ""}
                registry = service.metrics.registry

                def reads(kind: str) -> float | None:
                    return registry.get_sample_value("aicc_read_requests_total", {**labels, "kind": kind})

                full_before = reads(ReadKind.FULL)
                mark = len(sim.listing_reads)
                sim.set_task(live[1], status="DONE")
                sim.set_task(live[2], status="SYSTEM_STOP")
                # a finished task the vendor restarts: it is live again, the targeted reads see it
                sim.set_task(finished[-2], status="RUNNING")
                # a finished task the vendor ends another way: only the relist reads it
                sim.set_task(finished[-1], status="CANCEL")
                changed_at = datetime.now(UTC)
                await polls_done(service, 2)
                seen_live = await stream_events(server.url)
                full_after = reads(ReadKind.FULL)
                live_reads = reads_since(sim, mark)

                async def rerun_seen() -> bool:
                    return any(
                        isinstance(e, TaskStatusChanged) and e.entity_id == str(finished[-1])
                        for e in await stream_events(server.url)
                    )

                await wait_until(rerun_seen, timeout=2 * max_staleness, step=0.2)
                kinds = {kind: reads(kind) for kind in (ReadKind.TARGETED, ReadKind.BY_ID, ReadKind.RELIST)}
                staleness = registry.get_sample_value("aicc_read_staleness_seconds", labels)
            events = await stream_events(server.url)
        log = sim.log

    def changed(events: list[object], task: int) -> list[tuple[str, str]]:
        return [
            (e.previous.raw, e.current.raw)
            for e in events
            if isinstance(e, TaskStatusChanged) and e.entity_id == str(task)
        ]

    assert changed(seen_live, live[1]) == [("RUNNING", "DONE")]
    assert changed(seen_live, live[2]) == [("RUNNING", "SYSTEM_STOP")]
    assert changed(seen_live, finished[-2]) == [("DONE", "RUNNING")]
    # seen within two cycles of targeted reads: no full sweep, and every cycle read the live lists
    assert full_before is not None and full_after == full_before
    assert len(by_status(live_reads)) >= 2 * len(LIVE_STATUSES)
    assert changed(events, finished[-1]) == [("DONE", "CANCEL")]
    # when the poller saw it (the event's own time), not when this test's polling of the stream did
    (rerun,) = [e for e in events if isinstance(e, TaskStatusChanged) and e.entity_id == str(finished[-1])]
    assert (rerun.observed_at - changed_at).total_seconds() <= max_staleness
    # a leaver is read by id unless the relist slice of the same round read it first
    assert kinds[ReadKind.TARGETED] and kinds[ReadKind.RELIST] and kinds[ReadKind.BY_ID] is not None, kinds
    assert staleness is not None and 0 <= staleness <= max_staleness
    # one window for the whole API, both actions
    assert max_in_window(log.times()) <= LIMIT
    assert log.count("throttled") == 0
    assert len({e.event_id for e in events}) == len(events)
    assert sum(1 for e in events if isinstance(e, TaskStatusChanged)) == 4


@pytest.mark.slow
async def test_two_accounts_share_the_api_wide_limit_fairly() -> None:
    other_ak, other_secret = "LTAI5tSecondAccount", "second-account-secret"
    with NatsServer() as server:
        async with AiccsSimulator(credentials={AK: SECRET, other_ak: other_secret}, rate_limit=LIMIT) as sim:
            live: dict[str, list[int]] = {}
            for owner in (AK, other_ak):
                for _ in range(TASKS // 2 - LIVE):
                    sim.add_task(status="DONE", total=0, owner=owner)
                live[owner] = [sim.add_task(status="RUNNING", total=0, owner=owner) for _ in range(LIVE)]
            entries = [
                source_entry(sim),
                {
                    **source_entry(sim),
                    "account": "aiccs-second",
                    "access_key_id": other_ak,
                    "access_key_secret": other_secret,
                },
            ]
            async with running(make_config(server.url, entries)) as service:
                await polls_done(service, 1)
                registry = service.metrics.registry

                def spent(account: str) -> float:
                    labels = {"vendor": "alibaba-aiccs", "account": account, "scope": ""}
                    return sum(
                        registry.get_sample_value("aicc_read_requests_total", {**labels, "kind": kind}) or 0.0
                        for kind in (ReadKind.TARGETED, ReadKind.RELIST, ReadKind.BY_ID)
                    )

                accounts = ("aiccs-main", "aiccs-second")
                before = {account: spent(account) for account in accounts}
                for owner in live:
                    sim.set_task(live[owner][0], status="STOP")
                await polls_done(service, 3)
                used = {account: spent(account) - before[account] for account in accounts}
            events = await stream_events(server.url)
        log = sim.log
    stopped = {
        (e.account, e.entity_id)
        for e in events
        if isinstance(e, TaskStatusChanged) and e.current.raw == "STOP"
    }
    assert stopped == {("aiccs-main", str(live[AK][0])), ("aiccs-second", str(live[other_ak][0]))}
    low, high = sorted(used.values())
    assert low > 0 and high <= 2 * low, used
    assert max_in_window(log.times()) <= LIMIT
    assert log.count("throttled") == 0


async def test_a_server_that_ignores_the_status_filter_is_read_by_full_listings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each task is taken as it says (never as the filter claims), and the source stops relying on it."""
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim)) as (source,):
            _, state, _ = await step(source, SourceState())
            sim.honor_status_filter = False
            sim.set_task(live[1], status="SYSTEM_STOP")
            with caplog.at_level(logging.WARNING, logger="poller.vendors.informer"):
                mark = len(sim.listing_reads)
                second, state, second_events = await step(source, state)
                filtered = by_status(reads_since(sim, mark))
            mark = len(sim.listing_reads)
            third, state, third_events = await step(source, state)
            after = reads_since(sim, mark)
    assert "other statuses" in caplog.text
    # the lists that came back whole were cut short, not read to the end six times over
    assert 0 < len(filtered) < 2 * len(LIVE_STATUSES) * (TASKS // PAGE)
    assert not second.complete
    listed = {e.id: e.raw_state for e in second.entities}
    assert all(raw == sim.task(int(task_id)).status for task_id, raw in listed.items())
    # from then on every cycle is a full listing: complete, and nothing vanished or changed wrongly
    assert third.complete and len(after) == len(unfiltered(after)) == TASKS // PAGE
    events = second_events + third_events
    changes = [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    assert changes == [(str(live[1]), "SYSTEM_STOP")]
    assert not [e for e in events if isinstance(e, TaskVanished)]


async def test_a_total_above_max_entities_fails_the_cycle_and_vanishes_nothing() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim, max_staleness=4.0)) as (source,):
            _, state, _ = await step(source, SourceState())
            # the first filtered listing's answer claims more tasks than any account has
            plan = sim.inject(Fault.ABSURD_TOTAL, api=LIST_API, remaining=1)
            with pytest.raises(Exception) as failed:  # a group of them, from the round's tasks
                await source.observe(state)
            assert isinstance(as_source_error(failed.value), TooLarge)
            assert plan.remaining == 0
            sim.remove_fault(plan)
            events: list[object] = []
            complete = False
            for _ in range(20):
                observation, state, cycle_events = await step(source, state)
                events.extend(cycle_events)
                if observation.complete:
                    complete = True
                    break
    assert complete, "the relist never completed after the bad answer"
    assert events == []  # nothing changed at the vendor: no event at all, no vanish
    assert sum(1 for e in state.entities.values() if e.state != "vanished") == TASKS
    assert str(live[0]) in state.entities


# -- calls of the tasks the targeted reads follow ---------------------------------------------------------
CALL_TASKS = 30  # with pages of one task, more pages than a window's share


async def test_calls_of_a_task_that_finishes_between_reads_and_of_one_restarted_are_all_read() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=20) as sim:
        for _ in range(CALL_TASKS - 2):
            sim.add_task(status="DONE", total=0)
        finishing = sim.add_task(status="RUNNING", total=3)
        restarted = sim.add_task(status="DONE", total=3)
        entry = source_entry(
            sim, page_size=1, calls=True, rate_limits={LIST_API: 20, DETAIL_API: 20}, calls_settle=60.0
        )
        async with adapters(entry) as (source,):
            _, state, first_events = await step(source, SourceState())
            # a running task places its last call and finishes between two cycles
            last = sim.call(finishing, status_code=("200000", "用户听完语音"))
            sim.set_task(finishing, status="DONE")
            second, state, second_events = await step(source, state)
            # a finished task is restarted, calls, and finishes again
            sim.set_task(restarted, status="RUNNING")
            _, state, _ = await step(source, state)
            sim.set_task(restarted, status="DONE")
            marks = len(sim.log.records)
            _, state, fourth_events = await step(source, state)
            restarted_details = sum(1 for r in sim.log.records[marks:] if r.api == DETAIL_API)
            # an attempt that ended before the finish but is listed only now: still in the margin
            late = sim.call(restarted, ended=datetime.now(BEIJING) - timedelta(seconds=5))
            fifth, state, fifth_events = await step(source, state)
            # a task deleted inside its margin: the details of a task the vendor no longer knows
            # are a client error, and that does not fail the cycle (the relist decides about it)
            sim.remove_task(finishing)
            marks = len(sim.log.records)
            await step(source, state)
            refused = [r for r in sim.log.records[marks:] if r.api == DETAIL_API]
    assert refused, "the deleted task was still followed through its margin"
    assert not second.complete
    calls = [e for e in first_events + second_events if isinstance(e, CallFinished)]
    assert [c.call_id for c in calls] == [f"{last.Id}.0"]
    assert str(restarted) not in {e.id for e in fifth.entities}  # not read by the fifth cycle's lists
    assert restarted_details >= 1  # followed once it finished again, although it had finished before
    late_calls = [e.call_id for e in fourth_events + fifth_events if isinstance(e, CallFinished)]
    assert late_calls == [f"{late.Id}.0"]
