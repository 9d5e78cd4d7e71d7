"""Events for the pipeline tests, built by hand: the fields that matter, the rest fixed."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import (
    CallFinished,
    CallOutcome,
    EntityKind,
    EventBase,
    JobStatusChanged,
    Status,
    TaskAppeared,
    TaskState,
    TaskStatusChanged,
)

__all__ = ["NOW", "TOO_BIG", "appeared", "call", "status"]

NOW = datetime(2026, 12, 1, tzinfo=UTC)
#: a name this long makes the event bigger than the test streams' message size limit
TOO_BIG = "x" * 2000


def appeared(entity: str, name: str | None = None) -> TaskAppeared:
    return TaskAppeared(
        event_id=f"appeared-{entity}",
        vendor="v",
        account="a",
        observed_at=NOW,
        kind=EntityKind.TASK,
        entity_id=entity,
        name=name,
        seq=1,
        current=Status(state=TaskState.RUNNING, raw="running"),
    )


def status(entity: str, seq: int, raw: str = "done", kind: EntityKind = EntityKind.TASK) -> EventBase:
    event_type = JobStatusChanged if kind is EntityKind.JOB else TaskStatusChanged
    return event_type(
        event_id=f"status-{entity}-{seq}",
        vendor="v",
        account="a",
        observed_at=NOW,
        kind=kind,
        entity_id=entity,
        seq=seq,
        previous=Status(state=TaskState.RUNNING, raw="running"),
        current=Status(state=TaskState.COMPLETED, raw=raw),
    )


def call(call_id: str, task_id: str, callee_name: str | None = None) -> CallFinished:
    return CallFinished(
        event_id=f"call-{call_id}",
        vendor="v",
        account="a",
        observed_at=NOW,
        call_id=call_id,
        task_id=task_id,
        outcome=CallOutcome.ANSWERED,
        raw_outcome="1",
        callee_name=callee_name,
    )
