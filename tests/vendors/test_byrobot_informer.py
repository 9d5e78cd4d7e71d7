"""BYRobot reads that follow what can change, against the real simulator (and the real service).

A company of mostly finished tasks: each cycle lists the live statuses (``getTasks`` by ``status``),
reads by ``getTaskDetail`` the live tasks those lists missed and the tasks whose calls are behind,
and reads a slice of a relist spread over ``max_staleness``. What must hold, from the simulator's
own request log and the stream: a change among live tasks is seen without a full listing, with
every call of the task once; a finished task the vendor changes is seen within the maximum
staleness; no second holds more requests than an API's limit and none is throttled; only a complete
relist vanishes anything; a vendor that ignores the filter or reports an absurd total is read safely.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from poller.config import ConfigError
from poller.errors import ClientError, TooLarge, as_source_error
from poller.pipeline.differ import diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import Observation
from poller.pipeline.state import SourceState
from poller.simulators.base import Fault, ListingRead, max_in_window
from poller.simulators.byrobot import ByRobotSimulator
from poller.tools.natsserver import NatsServer
from poller.vendors.base import Source
from poller.vendors.byrobot import (
    CALLS_API,
    DETAIL_API,
    LIVE_STATUSES,
    PHONE_LOG_API,
    TASKS_API,
    ByRobotAccount,
    ByRobotSource,
)
from poller.vendors.informer import ReadKind
from schemas import CallFinished, TaskProgress, TaskStatusChanged, TaskVanished
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.vendors.relist import removed_ones_vanish_only_by_a_complete_relist
from tests.vendors.test_alibaba_vendors import adapters
from tests.vendors.test_byrobot import APP_KEY, APP_SECRET, COMPANY, byrobot_source

#: getTasks is the listing under test; the per-task APIs get room, so the first cycle (every task
#: new: its detail and calls read once) stays short
LIMIT = 20
TASK_LIMIT = 200
PAGE = 2
TASKS = 80  # more pages than a window's share of getTasks
LIVE = 10
SOURCE = SourceId(vendor="byrobot", account="by-main", scope=str(COMPANY))
LIMITS = {TASKS_API: LIMIT, DETAIL_API: TASK_LIMIT, CALLS_API: TASK_LIMIT, PHONE_LOG_API: TASK_LIMIT}


def simulator(**options: Any) -> ByRobotSimulator:
    sim = ByRobotSimulator(credentials={APP_KEY: APP_SECRET}, seed=11, rate_limits=LIMITS, **options)
    sim.add_company(COMPANY, APP_KEY)
    return sim


def world(sim: ByRobotSimulator, company: int = COMPANY) -> tuple[list[int], list[int]]:
    """Finished tasks first (the oldest: listed last, newest first), then running ones with calls."""
    finished = [sim.add_task(company, phones=2, status=2, finished=(0, 1)) for _ in range(TASKS - LIVE)]
    live = [sim.add_task(company, phones=6, status=1, finished=(0,)) for _ in range(LIVE)]
    return finished, live


def source_entry(sim: ByRobotSimulator, **extra: Any) -> dict[str, Any]:
    # the simulator shares the test's event loop: on a loaded machine it stamps arrivals late and
    # bunched, as a vendor far away would
    options = {"page_size": PAGE, "poll_interval": 0.001, "rate_limits": LIMITS, "rate_limit_margin": 0.1}
    return byrobot_source(sim, **{**options, **extra})


def reads_since(sim: ByRobotSimulator, mark: int) -> list[ListingRead]:
    return sim.listing_reads[mark:]


def unfiltered(reads: list[ListingRead]) -> list[ListingRead]:
    return [r for r in reads if not r.filters]


def by_status(reads: list[ListingRead]) -> list[ListingRead]:
    return [r for r in reads if [k for k, _ in r.filters] == ["status"]]


def details_of(sim: ByRobotSimulator, since: int) -> int:
    return sum(1 for r in sim.log.records[since:] if r.api == DETAIL_API)


async def step(source: Source, state: SourceState) -> tuple[Observation, SourceState, list[object]]:
    """One cycle of the source and the state the service would commit after it."""
    observation = await source.observe(state)
    result = diff(SOURCE, state, observation, datetime.now(UTC), Privacy())
    return observation, result.state, list(result.events)


def test_targeted_reads_and_max_staleness_are_configurable() -> None:
    entry = {"vendor": "byrobot", "account": "b", "company_id": 1, "app_key": "k", "app_secret": "s"}
    for bad in (0, 0.5, -1, 100_000, "soon"):
        with pytest.raises(ConfigError, match="max_staleness"):
            make_config("nats://127.0.0.1:1", [{**entry, "max_staleness": bad}])
    (account,) = make_config(
        "nats://127.0.0.1:1", [{**entry, "max_staleness": 30, "targeted_reads": False}]
    ).sources
    assert isinstance(account, ByRobotAccount) and account.max_staleness == 30
    assert not account.targeted_reads


async def test_simulator_filters_on_one_status_and_pages_the_filtered_list() -> None:
    async with simulator() as sim:
        finished, live = world(sim)
        sim.set_status(live[0], 4)
        async with adapters(source_entry(sim)) as (source,):
            assert isinstance(source, ByRobotSource)
            running_pages = [await source._tasks_page(n, "1") for n in range(1, 7)]
            paused = await source._tasks_page(1, "4")
            stopped = await source._tasks_page(1, "5")
            with pytest.raises(ClientError):
                await source._tasks_page(1, "paused")  # status is an integer
    assert {p.total for p in running_pages} == {LIVE - 1} and {p.pages for p in running_pages} == {5}
    listed = [t.callJobId for p in running_pages for t in p.items or []]
    assert listed == sorted(live[1:], reverse=True)  # newest first, each once, the sixth page empty
    assert {str(t.status) for p in running_pages for t in p.items or []} == {"1"}
    assert [t.callJobId for t in paused.items or []] == [live[0]] and paused.total == 1
    assert stopped.total == 0 and not stopped.items
    assert finished  # finished tasks are listed by no live status


async def test_a_task_that_finishes_between_reads_is_read_by_id_with_all_its_calls() -> None:
    async with simulator() as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim)) as (source,):
            first, state, _ = await step(source, SourceState())
            last_calls = sim.finish_calls(live[1], (0, 2, 6, 0, 1))
            sim.set_status(live[1], 2)
            mark, requests = len(sim.listing_reads), len(sim.log.records)
            second, state, events = await step(source, state)
            reads = reads_since(sim, mark)
            details = [r for r in sim.log.records[requests:] if r.api == DETAIL_API]
    assert first.complete and not second.complete
    changes = [
        (e.entity_id, e.previous.raw, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)
    ]
    assert changes == [(str(live[1]), "1", "2")]
    calls = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert sorted(calls) == sorted(str(c) for c in last_calls)
    progress = [(e.entity_id, e.completed, e.total) for e in events if isinstance(e, TaskProgress)]
    assert progress == [(str(live[1]), 6, 6)]
    # the live lists, a slice of the relist, and one detail per active task: the finished one's
    # detail, read by id, is not asked for again
    assert {dict(r.filters)["status"] for r in by_status(reads)} == set(LIVE_STATUSES)
    assert 0 < len(unfiltered(reads)) < TASKS // PAGE
    assert len(details) == LIVE


async def test_a_backlog_of_calls_is_read_to_its_end_after_the_task_finished() -> None:
    """max_call_pages bounds a cycle's calls of a task: a finished task is read by id until done."""
    async with simulator() as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim, max_call_pages=1)) as (source,):
            _, state, _ = await step(source, SourceState())
            backlog = sim.finish_calls(live[2], (0, 1, 2, 4, 5))  # three pages of two
            sim.set_status(live[2], 2)
            task = str(live[2])
            calls: list[str] = []
            progress: list[tuple[int | None, int | None]] = []
            for _ in range(5):
                _, state, events = await step(source, state)
                calls += [e.call_id for e in events if isinstance(e, CallFinished) and e.task_id == task]
                progress += [
                    (e.completed, e.total)
                    for e in events
                    if isinstance(e, TaskProgress) and e.entity_id == task
                ]
    assert sorted(calls) == sorted(str(c) for c in backlog)
    # the counts wait for the calls: one progress event, once the backlog is read
    assert progress == [(6, 6)]


async def test_targeted_cycles_are_partial_and_only_a_complete_relist_vanishes() -> None:
    async with simulator() as sim:
        finished, live = world(sim)
        async with adapters(source_entry(sim, max_staleness=4.0)) as (source,):

            def remove() -> None:
                sim.remove_task(live[0])  # a live task: its detail is "no such task" now
                sim.remove_task(finished[0])

            state, _ = await removed_ones_vanish_only_by_a_complete_relist(
                partial(step, source), remove, {str(live[0]), str(finished[0])}
            )
    assert sum(1 for e in state.entities.values() if e.state != "vanished") == TASKS - 2


@pytest.mark.slow
async def test_live_changes_without_a_full_sweep_and_finished_ones_within_max_staleness() -> None:
    max_staleness = 10.0
    with NatsServer() as server:
        async with simulator() as sim:
            finished, live = world(sim)
            config = make_config(server.url, [source_entry(sim, max_staleness=max_staleness)])
            async with running(config) as service:
                await polls_done(service, 2)
                labels = {"vendor": "byrobot", "account": "by-main", "scope": str(COMPANY)}
                registry = service.metrics.registry

                def reads(kind: str) -> float | None:
                    return registry.get_sample_value("aicc_read_requests_total", {**labels, "kind": kind})

                full_before = reads(ReadKind.FULL)
                mark = len(sim.listing_reads)
                sim.finish_calls(live[1], (0, 0))
                sim.set_status(live[2], 5)
                # a finished task the vendor restarts: it is live again, the targeted reads see it
                sim.set_status(finished[-2], 1)
                # a finished task the vendor terminates after all: only the relist reads it
                sim.set_status(finished[-1], 6)
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
                kinds = {kind: reads(kind) for kind in (ReadKind.TARGETED, ReadKind.RELIST)}
                staleness = registry.get_sample_value("aicc_read_staleness_seconds", labels)
            events = await stream_events(server.url)
        log = sim.log

    def changed(events: list[object], task: int) -> list[tuple[str, str]]:
        return [
            (e.previous.raw, e.current.raw)
            for e in events
            if isinstance(e, TaskStatusChanged) and e.entity_id == str(task)
        ]

    assert changed(seen_live, live[2]) == [("1", "5")]
    assert changed(seen_live, finished[-2]) == [("2", "1")]
    live_calls = [e for e in seen_live if isinstance(e, CallFinished) and e.task_id == str(live[1])]
    assert len(live_calls) == 3  # the one finished before the start, and the two since
    assert full_before is not None and full_after == full_before
    assert len(by_status(live_reads)) >= 2 * len(LIVE_STATUSES)
    assert changed(events, finished[-1]) == [("2", "6")]
    # when the poller saw it (the event's own time), not when this test's polling of the stream did
    (rerun,) = [e for e in events if isinstance(e, TaskStatusChanged) and e.entity_id == str(finished[-1])]
    assert (rerun.observed_at - changed_at).total_seconds() <= max_staleness
    assert all(n for n in kinds.values()), kinds
    assert staleness is not None and 0 <= staleness <= max_staleness
    for api, limit in LIMITS.items():
        assert max_in_window(log.times(api)) <= limit, api
    assert log.count("throttled") == 0
    assert len({e.event_id for e in events}) == len(events)
    calls = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert len(calls) == len(set(calls)) == (TASKS - LIVE) * 2 + LIVE + 2
    assert sum(1 for e in events if isinstance(e, TaskStatusChanged)) == 3


@pytest.mark.slow
async def test_two_companies_on_one_app_key_share_its_limit_fairly() -> None:
    other = COMPANY + 1
    with NatsServer() as server:
        async with simulator() as sim:
            sim.add_company(other, APP_KEY)
            live = {company: world(sim, company)[1] for company in (COMPANY, other)}
            entries = [
                source_entry(sim),
                {**source_entry(sim), "account": "by-second", "company_id": other},
            ]
            async with running(make_config(server.url, entries)) as service:
                await polls_done(service, 1)
                registry = service.metrics.registry

                def spent(account: str, company: int) -> float:
                    labels = {"vendor": "byrobot", "account": account, "scope": str(company)}
                    return sum(
                        registry.get_sample_value("aicc_read_requests_total", {**labels, "kind": kind}) or 0.0
                        for kind in (ReadKind.TARGETED, ReadKind.RELIST)
                    )

                sources = (("by-main", COMPANY), ("by-second", other))
                before = {s: spent(*s) for s in sources}
                for company in live:
                    sim.set_status(live[company][0], 4)
                await polls_done(service, 3)
                used = {s: spent(*s) - before[s] for s in sources}
            events = await stream_events(server.url)
        log = sim.log
    paused = {
        (e.account, e.entity_id) for e in events if isinstance(e, TaskStatusChanged) and e.current.raw == "4"
    }
    assert paused == {("by-main", str(live[COMPANY][0])), ("by-second", str(live[other][0]))}
    low, high = sorted(used.values())
    assert low > 0 and high <= 2 * low, used
    assert max_in_window(log.times(TASKS_API)) <= LIMIT
    assert log.count("throttled") == 0


async def test_a_server_that_ignores_the_status_filter_is_read_by_full_listings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each task is taken as it says (never as the filter claims), and the source stops relying on it."""
    async with simulator() as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim)) as (source,):
            _, state, _ = await step(source, SourceState())
            sim.honor_status_filter = False
            sim.set_status(live[1], 5)
            with caplog.at_level(logging.WARNING, logger="poller.vendors.informer"):
                mark = len(sim.listing_reads)
                second, state, second_events = await step(source, state)
                filtered = by_status(reads_since(sim, mark))
            mark = len(sim.listing_reads)
            third, state, third_events = await step(source, state)
            after = reads_since(sim, mark)
    assert "other statuses" in caplog.text
    assert 0 < len(filtered) < 2 * len(LIVE_STATUSES) * (TASKS // PAGE)
    assert not second.complete
    assert all(e.raw_state == str(sim.tasks[int(e.id)].status) for e in second.entities)
    assert third.complete and len(after) == len(unfiltered(after)) == TASKS // PAGE
    events = second_events + third_events
    changes = [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    assert changes == [(str(live[1]), "5")]
    assert not [e for e in events if isinstance(e, TaskVanished)]


async def test_a_total_above_max_entities_fails_the_cycle_and_vanishes_nothing() -> None:
    async with simulator() as sim:
        world(sim)
        async with adapters(source_entry(sim, max_staleness=4.0)) as (source,):
            _, state, _ = await step(source, SourceState())
            plan = sim.inject(Fault.ABSURD_TOTAL, api=TASKS_API, remaining=1)
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
    assert events == []
    assert sum(1 for e in state.entities.values() if e.state != "vanished") == TASKS
