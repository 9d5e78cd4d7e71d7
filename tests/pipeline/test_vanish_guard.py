"""A mass disappearance waits for a second complete listing; a call keeps one id whatever happens."""

from __future__ import annotations

from datetime import UTC, datetime

from poller.pipeline.differ import MassVanish, SweepDiff, _call_event
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import PersonalDataPolicy, Privacy
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation
from poller.pipeline.state import VANISHED, SourceState
from poller.vendors.alibaba_outboundbot import group_entity, job_entity
from schemas import CallFinished, CallOutcome, EntityKind, TaskAppeared, TaskProgress, TaskState, TaskVanished
from schemas.vendors.alibaba import Job

SRC = SourceId(vendor="v", account="a", scope="s")
NOW = datetime(2026, 11, 22, tzinfo=UTC)
PRIVACY = Privacy(PersonalDataPolicy.MASK)
GUARD = MassVanish(fraction=0.5, minimum=2)


def tasks(*ids: int) -> list[EntitySnapshot]:
    return [
        EntitySnapshot(kind=EntityKind.TASK, id=f"t{n}", state=TaskState.RUNNING, raw_state="1") for n in ids
    ]


def step(
    state: SourceState, entities: list[EntitySnapshot], *, complete: bool = True, guard: MassVanish = GUARD
) -> tuple[SourceState, list[object]]:
    result = SweepDiff(SRC, state, PRIVACY, guard).finish(
        Observation(entities=entities, complete=complete), NOW
    )
    return result.state, list(result.events)


def vanished(events: list[object]) -> list[str]:
    return [e.entity_id for e in events if isinstance(e, TaskVanished)]


def test_one_empty_complete_listing_vanishes_nothing_and_the_world_comes_back_quietly() -> None:
    state, _ = step(SourceState(), tasks(*range(10)))
    state, events = step(state, [])
    assert events == [] and state.vanish_held == 10
    assert all(e.held for e in state.entities.values())
    state, events = step(state, tasks(*range(10)))
    assert events == [], "no vanish, and no re-appearance either"
    assert state.vanish_held == 0 and not any(e.held for e in state.entities.values())


def test_a_second_complete_listing_that_agrees_vanishes_them_once() -> None:
    state, _ = step(SourceState(), tasks(*range(10)))
    state, _ = step(state, [])
    state, events = step(state, tasks(20), complete=False)  # a partial listing neither confirms nor clears
    assert vanished(events) == [] and state.vanish_held == 10
    state, events = step(state, [])
    # the held ten are confirmed; t20, seen since and missing for the first time, is alone no mass
    assert vanished(events) == [f"t{n}" for n in (*range(10), 20)]
    assert state.vanish_held == 0 and all(e.state == VANISHED for e in state.entities.values())
    state, events = step(state, [])
    assert events == []


def test_losing_most_at_once_is_held_and_a_minority_vanishes_at_once() -> None:
    state, _ = step(SourceState(), tasks(*range(10)))
    state, events = step(state, tasks(6, 7, 8, 9))  # 6 of 10 gone
    assert vanished(events) == [] and state.vanish_held == 6
    # 3 of the 6 come back, t9 goes too: the 3 still missing are confirmed, t9 alone is no mass
    state, events = step(state, tasks(0, 1, 2, 6, 7, 8))
    assert vanished(events) == ["t3", "t4", "t5", "t9"] and state.vanish_held == 0
    assert not any(e.held for e in state.entities.values())


def test_small_losses_and_a_disabled_guard_vanish_at_once() -> None:
    state, _ = step(SourceState(), tasks(*range(10)))
    state, events = step(state, tasks(*range(5, 10)))  # half: not more than half
    assert vanished(events) == [f"t{n}" for n in range(5)]
    state, _ = step(SourceState(), tasks(0, 1))
    state, events = step(state, [])  # two entities: not more than ``minimum``
    assert vanished(events) == ["t0", "t1"]
    state, _ = step(SourceState(), tasks(*range(10)))
    state, events = step(state, [], guard=MassVanish(fraction=1.0, minimum=0))
    assert len(vanished(events)) == 10


def test_a_failed_cycle_keeps_the_hold() -> None:
    state, _ = step(SourceState(), tasks(*range(10)))
    state, _ = step(state, [])
    kept = SweepDiff(SRC, state, PRIVACY, GUARD).unfinished().state
    assert kept.vanish_held == 10 and all(e.held for e in kept.entities.values())


def _job(status: str, reason: str | None = None) -> EntitySnapshot:
    return job_entity(Job(JobId="j1", Status=status, FailureReason=reason), "group")


def _calls(events: list[object]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


def test_a_finished_job_that_vanishes_and_comes_back_reports_its_call_under_one_id() -> None:
    others = tasks(*range(5))
    state, _ = step(SourceState(), [_job("Executing"), *others])
    state, events = step(state, [_job("Succeeded"), *others])
    (first,) = _calls(events)
    state, events = step(state, others)  # one job of six: no mass, it vanishes at once
    assert vanished(events) == ["j1"]
    state, events = step(state, [_job("Succeeded"), *others])
    assert any(isinstance(e, TaskAppeared) for e in events)
    assert _calls(events) == [], "the call was reported before the job vanished"
    # and were it derived again (a tombstone from before this rule), it is the same call
    again = _call_event(SRC, _job("Succeeded").call, PRIVACY, NOW)  # type: ignore[arg-type]
    assert again.event_id == first.event_id


def test_a_job_that_finished_while_out_of_sight_reports_its_call_when_it_comes_back() -> None:
    others = tasks(*range(5))
    state, _ = step(SourceState(), [_job("Executing"), *others])
    state, _ = step(state, others)  # vanishes while still executing
    state, events = step(state, [_job("Failed", "Busy"), *others])
    (call,) = _calls(events)
    assert call.outcome is CallOutcome.BUSY


def test_a_retried_job_reports_each_outcome_once() -> None:
    state, _ = step(SourceState(), [_job("Executing")])
    state, events = step(state, [_job("Failed", "NoAnswer")])
    (failed,) = _calls(events)
    state, _ = step(state, [_job("Executing")])
    state, events = step(state, [_job("Succeeded")])
    (answered,) = _calls(events)
    assert failed.event_id != answered.event_id
    assert (failed.outcome, answered.outcome) == (CallOutcome.NO_ANSWER, CallOutcome.ANSWERED)


def test_a_listed_call_keeps_its_id_whatever_else_the_cycle_saw() -> None:
    call = CallSnapshot(
        call_id="c1",
        task_id="t1",
        outcome=CallOutcome.ANSWERED,
        raw_outcome="0",
        ended_at="2026-11-22T10:00:00+08:00",
    )
    state, _ = step(SourceState(), tasks(1))
    one = SweepDiff(SRC, state, PRIVACY).finish(
        Observation(entities=tasks(1), complete=True, calls=[call]), NOW
    )
    other = SweepDiff(SRC, one.state, PRIVACY).finish(
        Observation(entities=[], complete=True, calls=[call]), NOW
    )
    assert [e.event_id for e in _calls(list(one.events))] == [e.event_id for e in _calls(list(other.events))]


def test_a_held_loss_does_not_show_as_a_job_group_dropping_to_zero() -> None:
    jobs = [job_entity(Job(JobId=f"j{n}", Status="Executing"), "group") for n in range(10)]
    state, _ = step(SourceState(), [*jobs, group_entity("group", "instance", jobs)])
    state, events = step(state, [group_entity("group", "instance", [])])  # an empty, complete answer
    assert events == [] and state.vanish_held == 10
    state, events = step(state, [*jobs, group_entity("group", "instance", jobs)])
    assert events == [], "the world came back: no progress down and up, no vanish, no re-appearance"
    # a real loss, confirmed: the jobs vanish and the group's counts follow
    state, _ = step(state, [group_entity("group", "instance", jobs[:2])])
    state, events = step(state, [*jobs[:2], group_entity("group", "instance", jobs[:2])])
    assert vanished(events) == [f"j{n}" for n in range(2, 10)]
    (progress,) = [e for e in events if isinstance(e, TaskProgress)]
    assert (progress.previous_completed, progress.completed, progress.total) == (0, 0, 2)
