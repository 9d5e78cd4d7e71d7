"""The differ's promises, on pure data: ids deterministic per change, distinct per repeat."""

from __future__ import annotations

from datetime import UTC, datetime

from poller.pipeline.differ import SweepDiff, diff
from poller.pipeline.health import health_transition
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import PersonalDataPolicy, Privacy
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation
from poller.pipeline.state import SourceState
from schemas import (
    CallFinished,
    CallOutcome,
    EntityKind,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    TaskAppeared,
    TaskProgress,
    TaskState,
    TaskStatusChanged,
    TaskVanished,
)

SRC = SourceId(vendor="v", account="a", scope="s")
NOW = datetime(2026, 11, 22, tzinfo=UTC)
PRIVACY = Privacy(PersonalDataPolicy.MASK)
STATES = {"A": TaskState.PENDING, "B": TaskState.RUNNING, "C": TaskState.COMPLETED}


def task(raw: str, done: int | None = None, total: int | None = None, tid: str = "t1") -> EntitySnapshot:
    return EntitySnapshot(
        kind=EntityKind.TASK, id=tid, state=STATES[raw], raw_state=raw, completed=done, total=total
    )


def step(
    state: SourceState, *snaps: EntitySnapshot, complete: bool = True
) -> tuple[SourceState, list[object]]:
    result = diff(SRC, state, Observation(entities=list(snaps), complete=complete), NOW, PRIVACY)
    return result.state, list(result.events)


def test_a_b_a_b_gives_distinct_ids_and_rederivation_gives_the_same() -> None:
    state, first = step(SourceState(), task("A"))
    ids = []
    for raw in ("B", "A", "B"):
        again_state, again = step(state, task(raw))
        state, events = step(state, task(raw))
        assert [e.event_id for e in events] == [e.event_id for e in again]  # same change → same id
        assert again_state.entities == state.entities
        ids.append(events[0].event_id)
    assert len(set(ids)) == 3
    assert isinstance(first[0], TaskAppeared)


def test_same_counter_different_value_different_id() -> None:
    state, _ = step(SourceState(), task("A"))
    _, to_b = step(state, task("B"))
    _, to_c = step(state, task("C"))
    assert to_b[0].event_id != to_c[0].event_id  # type: ignore[attr-defined]


def test_no_change_no_event_and_progress_shares_the_counter() -> None:
    state, _ = step(SourceState(), task("B", 1, 10))
    state, events = step(state, task("B", 1, 10))
    assert events == []
    state, events = step(state, task("C", 10, 10))
    assert [type(e) for e in events] == [TaskStatusChanged, TaskProgress]
    assert {e.seq for e in events} == {2}  # type: ignore[attr-defined]
    progress = events[1]
    assert isinstance(progress, TaskProgress) and (progress.previous_completed, progress.completed) == (1, 10)


def test_vanish_only_from_a_complete_listing_and_a_return_gets_fresh_ids() -> None:
    state, first = step(SourceState(), task("A"), task("A", tid="t2"))
    partial_state, events = step(state, task("A"), complete=False)
    assert events == [] and partial_state.entities == state.entities
    state, events = step(state, task("A"))
    assert [type(e) for e in events] == [TaskVanished]
    state, events = step(state, task("A"), task("A", tid="t2"))
    (back,) = events
    assert isinstance(back, TaskAppeared) and back.seq == 3
    assert back.event_id not in {e.event_id for e in first}  # type: ignore[attr-defined]


def test_a_tombstone_stays_quiet_and_later_vanishes_are_still_found() -> None:
    """Sweeps that see every entity again skip the vanish scan; a tombstone must not defeat it."""
    state, _ = step(SourceState(), task("A"), task("A", tid="t2"), task("A", tid="t3"))
    state, events = step(state, task("A"), task("A", tid="t3"))
    assert [(type(e), e.entity_id) for e in events] == [(TaskVanished, "t2")]  # type: ignore[attr-defined]
    state, events = step(state, task("A"), task("A", tid="t3"))
    assert events == []  # the tombstone of t2 is not seen and not reported again
    state, events = step(state, task("A"))
    assert [(type(e), e.entity_id) for e in events] == [(TaskVanished, "t3")]  # type: ignore[attr-defined]
    state, events = step(state, task("A"))
    assert events == []


def test_terminal_job_gives_call_finished_before_its_status_change_and_masks_the_number() -> None:
    call = CallSnapshot(
        call_id="j1",
        task_id="g1",
        outcome=CallOutcome.NO_ANSWER,
        raw_outcome="NoAnswer",
        callee_number="13512345678",
        callee_name="张三",
    )
    running = EntitySnapshot(kind=EntityKind.JOB, id="j1", state=TaskState.RUNNING, raw_state="Executing")
    failed = EntitySnapshot(
        kind=EntityKind.JOB, id="j1", state=TaskState.FAILED, raw_state="Failed", call=call
    )
    state, _ = step(SourceState(), running)
    state, events = step(state, failed)
    assert [type(e) for e in events] == [CallFinished, JobStatusChanged]
    finished = events[0]
    assert isinstance(finished, CallFinished)
    assert finished.callee_number == "135******78" and finished.callee_name == "张*"
    _, again = step(state, failed)
    assert again == []  # already terminal: no second call-finished


def test_one_degraded_and_one_recovered_per_episode() -> None:
    from schemas import DegradeReason

    health = SourceState().health
    health, events = health_transition(SRC, health, ("api", "timeout", "slow"), NOW)
    assert [type(e) for e in events] == [SourceDegraded]
    assert isinstance(events[0], SourceDegraded) and events[0].reason is DegradeReason.TIMEOUT
    health, events = health_transition(SRC, health, ("api", "server_error", "still"), NOW)
    assert events == []
    health, events = health_transition(SRC, health, None, NOW)
    assert [type(e) for e in events] == [SourceRecovered]
    health, events = health_transition(SRC, health, None, NOW)
    assert events == []
    _, events = health_transition(SRC, health, ("api", "timeout", "again"), NOW)
    assert isinstance(events[0], SourceDegraded) and events[0].episode == 2


def test_a_tasks_calls_come_before_its_terminal_status_and_progress() -> None:
    state, _ = step(SourceState(), task("B", 1, 3))
    calls = [
        CallSnapshot(call_id=f"c{i}", task_id="t1", outcome=CallOutcome.ANSWERED, raw_outcome="0")
        for i in (2, 3)
    ]
    observation = Observation(entities=[task("C", 3, 3)], complete=True, calls=calls, cursors={"calls.t1": 3})
    events = diff(SRC, state, observation, NOW, PRIVACY).events
    assert [type(e) for e in events] == [CallFinished, CallFinished, TaskStatusChanged, TaskProgress]


def test_acked_only_keeps_the_pages_and_the_acked_prefix_and_not_the_cursors() -> None:
    previous, _ = step(SourceState(), task("A", tid="t1"), task("A", tid="t2"), task("A", tid="t3"))
    previous.cursors = {"calls.t1": 1}
    previous.stream_seq = 3
    sweep = SweepDiff(SRC, previous, PRIVACY)
    page = [task("B", tid="t1")]
    assert len(sweep.apply(page, NOW)) == 1
    sweep.published(4)  # the page's event is acked
    observation = Observation(
        entities=[*page, task("C", tid="t2"), task("B", tid="t3"), task("A", tid="t4")],
        complete=True,
        cursors={"calls.t1": 9},
    )
    finished = sweep.finish(observation, NOW)
    assert [e.entity_id for e in finished.events] == ["t2", "t3", "t4"]  # type: ignore[attr-defined]
    state = sweep.acked_only(finished.events[:1])
    assert {k: (e.raw, e.seq) for k, e in state.entities.items()} == {
        "t1": ("B", 2),  # the page
        "t2": ("C", 2),  # the acked prefix
        "t3": ("A", 1),  # not acked: as committed before
    }
    assert state.cursors == {"calls.t1": 1} and state.stream_seq == 4


def test_a_page_whose_publish_was_cut_is_taken_back_but_for_its_acked_events() -> None:
    previous, _ = step(SourceState(), task("A", tid="t1"), task("A", tid="t2"), task("A", tid="t3"))
    sweep = SweepDiff(SRC, previous, PRIVACY)
    first, _ = sweep.apply_page([task("B", tid="t1")], NOW)  # published and acked
    sweep.published(4)
    events, undo = sweep.apply_page([task("B", tid="t1"), task("C", tid="t2"), task("B", tid="t3")], NOW)
    assert [e.entity_id for e in events] == ["t2", "t3"]  # type: ignore[attr-defined]
    # the publish was cut after the first of them was acked: the failed cycle keeps only that
    sweep.take_back(undo, events[:1])
    kept = sweep.unfinished().state
    assert {k: (e.raw, e.seq) for k, e in kept.entities.items()} == {
        "t1": ("B", 2),  # the earlier page, acked
        "t2": ("C", 2),  # acked before the cut
        "t3": ("A", 1),  # never acked: as committed, so the next cycle finds the change again
    }
    again = diff(
        SRC,
        kept,
        Observation(entities=[task("B"), task("C", tid="t2"), task("B", tid="t3")], complete=True),
        NOW,
        PRIVACY,
    )
    assert [e.entity_id for e in again.events] == ["t3"]  # type: ignore[attr-defined]
    assert again.events[0].event_id == events[1].event_id  # the same change, the same id: no double
    assert [e.entity_id for e in first] == ["t1"]  # type: ignore[attr-defined]
