"""task-appeared tells the first listing of a source (its inventory) from tasks created since."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from poller.pipeline.differ import SweepDiff, diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import PersonalDataPolicy, Privacy
from poller.pipeline.redact import Redactor
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import EntityState, SourceState, apply_published
from schemas import EntityKind, TaskAppeared, TaskState, decoder, encoder

SRC = SourceId(vendor="v", account="a", scope="s")
NOW = datetime(2026, 12, 1, tzinfo=UTC)
PRIVACY = Privacy(PersonalDataPolicy.MASK)


def task(tid: str) -> EntitySnapshot:
    return EntitySnapshot(kind=EntityKind.TASK, id=tid, state=TaskState.RUNNING, raw_state="1")


def sweep(state: SourceState, *tids: str) -> tuple[SourceState, list[TaskAppeared]]:
    result = diff(SRC, state, Observation(entities=[task(t) for t in tids], complete=True), NOW, PRIVACY)
    appeared = [e for e in result.events if isinstance(e, TaskAppeared)]
    return result.state, appeared


def test_first_sweep_is_inventory_and_later_appearances_are_new() -> None:
    state, first = sweep(SourceState(), "t1", "t2")
    assert [e.initial_inventory for e in first] == [True, True]
    state, later = sweep(state, "t1", "t2", "t3")
    assert [(e.entity_id, e.initial_inventory) for e in later] == [("t3", False)]


def test_an_empty_first_listing_still_counts_so_the_first_task_created_is_new() -> None:
    state, first = sweep(SourceState())
    assert first == [] and state.cursors  # committed although nothing appeared
    _, later = sweep(state, "t1")
    assert [e.initial_inventory for e in later] == [False]


def test_a_task_back_after_vanishing_is_not_inventory() -> None:
    state, _ = sweep(SourceState(), "t1")
    state, _ = sweep(state)  # vanished
    _, back = sweep(state, "t1")
    assert [e.initial_inventory for e in back] == [False]


def test_a_first_sweep_that_failed_part_way_is_finished_as_inventory() -> None:
    partial = SweepDiff(SRC, SourceState(), PRIVACY)
    published = partial.apply([task("t1")], NOW)
    assert [e.initial_inventory for e in published if isinstance(e, TaskAppeared)] == [True]
    state = partial.unfinished().state
    _, rest = sweep(state, "t1", "t2")
    assert [(e.entity_id, e.initial_inventory) for e in rest] == [("t2", True)]


def test_replayed_inventory_events_keep_the_first_sweep_inventory() -> None:
    # the first sweep's events reached the stream but its commit did not: replay rebuilds the state
    _, published = sweep(SourceState(), "t1")
    rebuilt = SourceState()
    for seq, event in enumerate(published, start=1):
        apply_published(rebuilt, decoder.decode(encoder.encode(event)), seq, names=Redactor().kept)
    assert rebuilt.entities
    _, rest = sweep(rebuilt, "t1", "t2")
    assert [(e.entity_id, e.initial_inventory) for e in rest] == [("t2", True)]


def test_state_committed_before_the_flag_existed_reports_new_tasks_as_new() -> None:
    legacy = SourceState(entities={"t1": EntityState(kind="task", state="running", raw="1", seq=1)})
    _, later = sweep(legacy, "t1", "t2")
    assert [(e.entity_id, e.initial_inventory) for e in later] == [("t2", False)]


def test_the_flag_does_not_change_event_ids() -> None:
    _, first = sweep(SourceState(), "t1")
    _, relisted = sweep(SourceState(entities={}, cursors={}), "t1")
    assert first[0].event_id == relisted[0].event_id
    assert msgspec.structs.replace(first[0], initial_inventory=False).event_id == first[0].event_id
