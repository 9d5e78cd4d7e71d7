"""AICCS reads that follow what can change, at their edges: a status filter that once misled
them is distrusted for a cool-down and relied on again; a relist pass under churn (tasks created
and deleted while it pages) completes by reading by id what it missed, and vanishes only what is
gone; an entity no read by id can ask for is vanished only by a pass whose pages agree.
Against the real simulator (helpers shared with tests/vendors/test_aiccs_informer.py).
"""

from __future__ import annotations

import logging

import anyio
import pytest

from poller.ops.metrics import Metrics
from poller.pipeline.state import EntityState, SourceState
from poller.simulators.alibaba_aiccs import AiccsSimulator
from poller.vendors.alibaba_aiccs import AiccsSource
from poller.vendors.informer import MAX_COOL_DOWN, FilterTrust, Mismatch, ReadKind
from schemas import TaskStatusChanged, TaskVanished
from tests.vendors.test_aiccs_informer import (
    LIMIT,
    PAGE,
    TASKS,
    by_id,
    by_status,
    reads_since,
    source_entry,
    step,
    unfiltered,
    world,
)
from tests.vendors.test_alibaba_vendors import AK, SECRET, adapters


async def test_a_task_that_moved_between_the_filter_and_the_read_is_no_strike() -> None:
    """A filter index that lags behind the records returns a task that just left the filtered
    status: it is taken as it says, and the source keeps its targeted reads."""
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        _, live = world(sim)
        async with adapters(source_entry(sim)) as (source,):
            _, state, _ = await step(source, SourceState())
            sim.set_task(live[0], status="DONE")
            sim.filed_status[live[0]] = "RUNNING"  # the RUNNING list still returns it
            second, state, events = await step(source, state)
            sim.filed_status.clear()
            mark = len(sim.listing_reads)
            await step(source, state)
            third = reads_since(sim, mark)
            assert isinstance(source, AiccsSource)
            informer = source.informer
    assert {e.id: e.raw_state for e in second.entities}[str(live[0])] == "DONE"
    changes = [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    assert changes == [(str(live[0]), "DONE")]
    assert informer.trust.strikes == 0 and informer.trust.trusted
    assert by_status(third) and len(unfiltered(third)) < TASKS // PAGE  # still targeted


async def test_an_ignored_filter_is_distrusted_for_a_cool_down_then_relied_on_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One bad answer costs full listings for ``max_staleness``, not the process's lifetime; a
    second doubles the cool-down."""
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        world(sim)
        async with adapters(source_entry(sim, max_staleness=1.0)) as (source,):
            assert isinstance(source, AiccsSource)
            trust = source.informer.trust
            _, state, _ = await step(source, SourceState())
            sim.honor_status_filter = False
            with caplog.at_level(logging.WARNING, logger="poller.vendors.informer"):
                _, state, _ = await step(source, state)
            sim.honor_status_filter = True
            assert trust.strikes == 1 and 0 < trust.left() <= 1.0
            mark = len(sim.listing_reads)
            _, state, _ = await step(source, state)  # inside the cool-down: one full listing
            cooling = reads_since(sim, mark)
            await anyio.sleep(trust.left())
            mark = len(sim.listing_reads)
            _, state, events = await step(source, state)
            resumed = reads_since(sim, mark)
    assert "full listings for 1 s (strike 1)" in caplog.text
    assert cooling and not by_status(cooling)
    assert by_status(resumed)  # targeted reads again
    assert not [e for e in events if isinstance(e, TaskVanished)]


def test_each_strike_doubles_the_cool_down_and_a_clean_pass_forgives_them() -> None:
    now = [0.0]
    trust = FilterTrust(10.0, clock=lambda: now[0])
    assert trust.trusted and trust.distrust() == 10.0 and not trust.trusted
    now[0] = 10.0
    assert trust.trusted and trust.distrust() == 20.0 and trust.distrust() == 40.0
    for _ in range(40):  # a vendor that keeps ignoring its filter: a day at most between tries
        trust.distrust()
    assert trust.left() == MAX_COOL_DOWN
    trust.proved(since=now[0])  # a pass that began at the last strike proves nothing
    assert trust.strikes == 43
    trust.proved(since=now[0] + 1)
    assert trust.strikes == 0 and trust.distrust() == 10.0


def test_filter_mismatches_and_the_cool_down_are_metrics() -> None:
    metrics = Metrics()
    labels = {"vendor": "alibaba-aiccs", "account": "a", "scope": ""}
    metrics.observe_reads(
        "alibaba-aiccs",
        "a",
        "",
        requests={ReadKind.TARGETED: 3},
        staleness=1.0,
        mismatches={Mismatch.MOVED: 2, Mismatch.IGNORED: 5},
        distrusted=30.0,
    )
    sample = metrics.registry.get_sample_value
    assert sample("aicc_read_filter_mismatches_total", {**labels, "verdict": "moved"}) == 2
    assert sample("aicc_read_filter_mismatches_total", {**labels, "verdict": "ignored"}) == 5
    assert sample("aicc_read_filter_distrusted_seconds", labels) == 30.0


async def test_a_relist_under_churn_completes_and_vanishes_only_what_is_gone() -> None:
    """Tasks are created during every page of every pass, and one is deleted mid-pass from a page
    already read, so every later task moves back across a page border and some are skipped by the
    pass: passes still complete (read by id what they missed), the deleted task vanishes, nothing
    else does, and no task's last read gets older than ``max_staleness``."""
    max_staleness = 8.0
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        finished, _ = world(sim)
        doomed = finished[0]  # on page 1
        created: list[int] = []
        reads = 0

        def churn(number: int, filters: tuple[tuple[str, str], ...]) -> None:
            nonlocal reads
            if filters:
                return
            reads += 1
            if reads % 3 == 0:
                created.append(sim.add_task(status="DONE", total=0))
            if number > 20:
                sim.remove_task(doomed)

        async with adapters(source_entry(sim, max_staleness=max_staleness)) as (source,):
            assert isinstance(source, AiccsSource)
            informer = source.informer
            _, state, _ = await step(source, SourceState())
            sim.on_list = churn
            vanished: set[str] = set()
            completed = 0
            staleness: list[float] = []
            for _ in range(30):
                observation, state, events = await step(source, state)
                assert informer.following
                staleness.append(informer.relist.staleness())
                vanished |= {e.entity_id for e in events if isinstance(e, TaskVanished)}
                completed += observation.complete
                if str(doomed) in vanished and completed >= 2:
                    break
            by_id_reads = len(by_id(sim.listing_reads))
    assert vanished == {str(doomed)}
    assert completed >= 2
    assert by_id_reads > 0  # the tasks the shifted pages skipped were read by id
    assert max(staleness) < max_staleness
    known = {e for e, v in state.entities.items() if v.state != "vanished"}
    assert {str(t) for t in finished[1:]} <= known and len(created) > 10


#: an id ListTask cannot be asked for (not digits): only a pass whose pages agree can vanish it
ODD_ID = "odd-1"


def with_odd_entity(state: SourceState) -> SourceState:
    """``state`` plus a finished task of an id no read by id can ask for, which the vendor lists no more."""
    odd = EntityState(kind="task", state="completed", raw="DONE", seq=1)
    return SourceState(entities={**state.entities, ODD_ID: odd}, cursors=dict(state.cursors))


async def test_an_entity_no_read_by_id_can_ask_for_vanishes_only_in_a_pass_whose_pages_agree() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, rate_limit=LIMIT) as sim:
        world(sim)
        reads = 0

        def churn(number: int, filters: tuple[tuple[str, str], ...]) -> None:
            nonlocal reads
            if not filters:
                reads += 1
                if reads % 3 == 0:
                    sim.add_task(status="DONE", total=0)  # every pass sees its total change

        async with adapters(source_entry(sim, max_staleness=4.0)) as (source,):
            assert isinstance(source, AiccsSource)
            _, state, _ = await step(source, SourceState())
            state = with_odd_entity(state)
            sim.on_list = churn
            churned: list[bool] = []
            pass_began = source.informer.relist.started_at
            for _ in range(12):
                observation, state, events = await step(source, state)
                assert ODD_ID not in {e.entity_id for e in events if isinstance(e, TaskVanished)}
                churned.append(observation.complete)
                if source.informer.relist.started_at != pass_began:
                    break  # a pass under churn ended
            sim.on_list = None
            vanished_at = None
            for cycle in range(30):
                observation, state, events = await step(source, state)
                if ODD_ID in {e.entity_id for e in events if isinstance(e, TaskVanished)}:
                    vanished_at = cycle
                    assert observation.complete
                    break
    assert churned and not any(churned), "a pass under churn completed though it could not ask for the odd id"
    assert state.entities[ODD_ID].state != "completed"
    assert vanished_at is not None, "a pass whose pages agree never vanished the odd id"
