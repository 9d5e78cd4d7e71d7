"""OutboundBot reads that follow what can change, against the real simulator (and the real service).

A group of mostly finished jobs: each cycle lists the live statuses, re-reads leavers by id and reads
a slice of a relist spread over ``max_staleness``. What must hold, from the simulator's own request
log and the stream: a change among live jobs is seen without waiting for a full sweep; a finished
job the vendor changes is seen within the maximum staleness; no second holds more requests than the
limit and none is throttled; only a complete relist vanishes anything.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from poller.config import ConfigError
from poller.pipeline.differ import diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import SourceState
from poller.simulators.alibaba_outboundbot import OutboundBotSimulator
from poller.simulators.base import max_in_window
from poller.tools.natsserver import NatsServer
from poller.vendors.alibaba_outboundbot import LIST_API, LIST_JOBS_API, OutboundBotAccount
from poller.vendors.informer import ReadKind, RelistPass
from schemas import CallFinished, EntityKind, JobStatusChanged, TaskState
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.vendors.relist import removed_ones_vanish_only_by_a_complete_relist
from tests.vendors.test_alibaba_vendors import AK, GROUP, INSTANCE, SECRET, adapters, outboundbot_source

LIMIT = 40
PAGE = 10
JOBS = 600  # 60 pages: a full sweep at LIMIT/s takes 1.5 s
LIVE = 20


def world(sim: OutboundBotSimulator) -> tuple[list[str], list[str]]:
    sim.add_group(INSTANCE, GROUP)
    finished = [sim.add_job(INSTANCE, GROUP, status="Succeeded") for _ in range(JOBS - LIVE)]
    live = [sim.add_job(INSTANCE, GROUP, status="Executing") for _ in range(LIVE)]
    return finished, live


def source_entry(sim: OutboundBotSimulator, **extra: object) -> dict[str, object]:
    return outboundbot_source(
        sim,
        [GROUP],
        page_size=PAGE,
        poll_interval=0.001,
        rate_limits={LIST_API: LIMIT, LIST_JOBS_API: LIMIT},
        # the simulator shares the test's event loop: on a loaded machine it stamps arrivals late and
        # bunched, as a vendor far away would
        rate_limit_margin=0.1,
        **extra,
    )


def test_max_staleness_is_validated() -> None:
    entry = {
        "vendor": "alibaba-outboundbot",
        "account": "a",
        "instance_id": "i",
        "job_group_ids": ["g"],
        "access_key_id": AK,
        "access_key_secret": SECRET,
    }
    for bad in (0, 0.5, -1, 100_000, "soon"):
        with pytest.raises(ConfigError, match="max_staleness"):
            make_config("nats://127.0.0.1:1", [{**entry, "max_staleness": bad}])
    (account,) = make_config("nats://127.0.0.1:1", [{**entry, "max_staleness": 30}]).sources
    assert isinstance(account, OutboundBotAccount) and account.max_staleness == 30


async def test_simulator_filters_on_one_status_and_reads_by_id() -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        finished, live = world(sim)
        sim.set_status(live[0], "Paused")
        async with adapters(source_entry(sim)) as (source,):
            executing = await source._page(1, "Executing")  # type: ignore[attr-defined]
            paused = await source._page(1, "Paused")  # type: ignore[attr-defined]
            by_id = await source._jobs_by_id([finished[0], live[0], "no-such-job"])  # type: ignore[attr-defined]
    assert executing.TotalCount == LIVE - 1 and {j.Status for j in executing.List} == {"Executing"}
    assert [j.JobId for j in paused.List] == [live[0]] and paused.TotalCount == 1
    assert [(j.JobId, j.Status) for j in by_id] == [(finished[0], "Succeeded"), (live[0], "Paused")]


async def test_a_live_job_that_leaves_the_live_lists_is_read_by_id() -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        _, live = world(sim)  # the live jobs are on the last pages: the first relist slice misses them
        async with adapters(source_entry(sim)) as (source,):
            first = await source.observe(SourceState())
            committed = diff(
                SourceId(vendor="alibaba-outboundbot", account="ob-main", scope=GROUP),
                SourceState(),
                first,
                datetime.now(UTC),
                Privacy(),
            ).state
            sim.set_status(live[1], "Failed", "Busy")
            before = len(sim.log.times(LIST_JOBS_API))
            second = await source.observe(committed)
    assert first.complete
    by_id = {e.id: e for e in second.entities}
    assert by_id[live[1]].raw_state == "Failed"
    call = by_id[live[1]].call
    assert call is not None and call.raw_outcome == "Busy"
    assert len(sim.log.times(LIST_JOBS_API)) == before + 1  # read by id once, in the first round


@pytest.mark.slow
async def test_targeted_cycles_are_partial_and_only_a_complete_relist_vanishes() -> None:
    source_id = SourceId(vendor="alibaba-outboundbot", account="ob-main", scope=GROUP)
    async with OutboundBotSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        finished, live = world(sim)
        async with adapters(source_entry(sim, max_staleness=4.0)) as (source,):

            async def step(state: SourceState) -> tuple[Observation, SourceState, list[object]]:
                observation = await source.observe(state)
                result = diff(source_id, state, observation, datetime.now(UTC), Privacy())
                return observation, result.state, list(result.events)

            def remove() -> None:
                sim.remove_job(live[0])  # a live job the targeted reads will not find any more
                sim.remove_job(finished[0])

            state, _ = await removed_ones_vanish_only_by_a_complete_relist(
                step, remove, {live[0], finished[0]}
            )
    assert sum(1 for e in state.entities.values() if e.kind == "job" and e.state != "vanished") == JOBS - 2


@pytest.mark.slow
async def test_live_changes_without_a_full_sweep_and_finished_ones_within_max_staleness() -> None:
    max_staleness = 10.0
    with NatsServer() as server:
        async with OutboundBotSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
            finished, live = world(sim)
            config = make_config(server.url, [source_entry(sim, max_staleness=max_staleness)])
            async with running(config) as service:
                await polls_done(service, 2)
                # a live job finishes with a call: found by id after it leaves the Executing list
                labels = {"vendor": "alibaba-outboundbot", "account": "ob-main", "scope": GROUP}
                registry = service.metrics.registry

                def full_sweeps() -> float | None:
                    return registry.get_sample_value(
                        "aicc_read_requests_total", {**labels, "kind": ReadKind.FULL}
                    )

                full_before = full_sweeps()
                sim.set_status(live[1], "Failed", "Busy")
                sim.set_status(live[2], "Paused")
                # a finished job the vendor restarts: it is live again, the targeted reads see it
                sim.set_status(finished[-2], "Executing")
                # a finished job the vendor re-ran to another end: only the relist reads it
                sim.set_status(finished[-1], "Failed", "NoAnswer")
                restarted_at = datetime.now(UTC)
                await polls_done(service, 2)
                seen_live = seen_restart = await stream_events(server.url)
                full_after = full_sweeps()

                async def rerun_seen() -> bool:
                    return any(
                        isinstance(e, JobStatusChanged) and e.entity_id == finished[-1]
                        for e in await stream_events(server.url)
                    )

                await wait_until(rerun_seen, timeout=2 * max_staleness, step=0.2)
                reads = {
                    kind: registry.get_sample_value("aicc_read_requests_total", {**labels, "kind": kind})
                    for kind in (ReadKind.FULL, ReadKind.TARGETED, ReadKind.RELIST)
                }
                staleness = registry.get_sample_value("aicc_read_staleness_seconds", labels)
            events = await stream_events(server.url)
        log = sim.log

    def changed(events: list[object], job: str) -> list[tuple[str, str]]:
        return [
            (e.previous.raw, e.current.raw)
            for e in events
            if isinstance(e, JobStatusChanged) and e.entity_id == job
        ]

    assert changed(seen_live, live[1]) == [("Executing", "Failed")]
    assert changed(seen_live, live[2]) == [("Executing", "Paused")]
    calls = [c.call_id for c in seen_live if isinstance(c, CallFinished)]
    assert calls.count(live[1]) == 1 and len(calls) == JOBS - LIVE + 1  # the finished ones, and this one
    # seen within two cycles of targeted reads, no full sweep in between
    assert full_before is not None and full_after == full_before
    assert changed(seen_restart, finished[-2]) == [("Succeeded", "Executing")]
    assert changed(events, finished[-1]) == [("Succeeded", "Failed")]
    # when the poller saw it (the event's own time), not when this test's polling of the stream did
    (rerun,) = [e for e in events if isinstance(e, JobStatusChanged) and e.entity_id == finished[-1]]
    assert (rerun.observed_at - restarted_at).total_seconds() <= max_staleness
    # the scheduler's split is visible: full first sweep, then targeted reads and relist pages
    assert all(n is not None and n > 0 for n in reads.values()), reads
    assert staleness is not None and 0 <= staleness <= max_staleness
    for api in (LIST_API, LIST_JOBS_API):
        assert max_in_window(log.times(api)) <= LIMIT, api
    assert log.count("throttled") == 0
    # one event per change: nothing doubled by the overlap of targeted reads and the relist
    assert len({e.event_id for e in events}) == len(events)
    assert sum(1 for e in events if isinstance(e, JobStatusChanged)) == 4


def test_relist_catch_up_after_an_outage_is_spread_over_cycles() -> None:
    now = [0.0]
    relist = RelistPass(1, max_staleness=60.0, clock=lambda: now[0])
    plan = relist.plan
    # a cycle spends one window's share: what 10 targeted requests leave of 100 goes to the relist
    assert plan(page_size=100, targeted=10, share=100, cycle_seconds=1.0) == 90  # total not known yet
    job = EntitySnapshot(kind=EntityKind.JOB, id="j1", state=TaskState.RUNNING, raw_state="Executing")
    relist.listed_page([job], total=100 * 1000)  # 1,000 pages
    relist.numbers(1)
    assert plan(page_size=100, targeted=10, share=100, cycle_seconds=1.0) == 90
    # more targeted reads leave less, but the relist always moves
    assert plan(page_size=100, targeted=100, share=100, cycle_seconds=1.0) == 34  # 999 pages, 30 cycles left
    # late for the deadline (half the staleness): it takes what it needs, at most one share a cycle
    now[0] = 25.0
    assert plan(page_size=100, targeted=10, share=100, cycle_seconds=1.0) == 100
    # long past the deadline (an outage): still one share per cycle, not the whole backlog at once
    now[0] = 600.0
    assert plan(page_size=100, targeted=10, share=100, cycle_seconds=1.0) == 100
    # a smaller share (more sources on one credential) caps it lower
    assert plan(page_size=100, targeted=10, share=25, cycle_seconds=1.0) == 25


@pytest.mark.slow
async def test_two_groups_on_one_credential_share_its_limit_fairly() -> None:
    groups = ["group-a", "group-b"]
    with NatsServer() as server:
        async with OutboundBotSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
            live: dict[str, list[str]] = {}
            for group in groups:
                sim.add_group(INSTANCE, group)
                for _ in range(JOBS // 2 - LIVE):
                    sim.add_job(INSTANCE, group, status="Succeeded")
                live[group] = [sim.add_job(INSTANCE, group, status="Executing") for _ in range(LIVE)]
            entry = {**source_entry(sim), "job_group_ids": groups}
            async with running(make_config(server.url, [entry])) as service:
                await polls_done(service, 1)
                registry = service.metrics.registry

                def reads(group: str) -> float:
                    labels = {"vendor": "alibaba-outboundbot", "account": "ob-main", "scope": group}
                    return sum(
                        registry.get_sample_value("aicc_read_requests_total", {**labels, "kind": kind}) or 0.0
                        for kind in (ReadKind.TARGETED, ReadKind.RELIST)
                    )

                before = {group: reads(group) for group in groups}
                for group in groups:
                    sim.set_status(live[group][0], "Paused")
                await polls_done(service, 3)
                spent = {group: reads(group) - before[group] for group in groups}
            events = await stream_events(server.url)
        log = sim.log
    # both groups saw their change, and neither took the other's part of the one limit
    paused = {e.entity_id for e in events if isinstance(e, JobStatusChanged) and e.current.raw == "Paused"}
    assert paused == {live[group][0] for group in groups}
    low, high = sorted(spent.values())
    assert low > 0 and high <= 2 * low, spent
    assert max_in_window(log.times(LIST_API)) <= LIMIT
    assert log.count("throttled") == 0


def test_a_relist_pass_whose_total_was_a_lie_ends_incomplete() -> None:
    """An absurd total does not keep a pass reading empty pages forever, nor let it vanish anything."""
    relist = RelistPass(1, max_staleness=60.0, clock=lambda: 0.0)
    snap = EntitySnapshot(kind=EntityKind.JOB, id="j1", state=TaskState.RUNNING, raw_state="Executing")
    relist.listed_page([snap], total=10**9)
    relist.numbers(1)
    assert not relist.done(page_size=100)
    relist.listed_page([], total=10**9)  # page 2 of ten million is empty
    relist.numbers(1)
    assert relist.done(page_size=100)
    entities, complete = relist.finish()
    assert [e.id for e in entities] == ["j1"] and not complete
