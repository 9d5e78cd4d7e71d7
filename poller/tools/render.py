"""One readable line per event, for the demo and ``poller tail``."""

from __future__ import annotations

from schemas import (
    CallFinished,
    Event,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    Status,
    TaskAppeared,
    TaskProgress,
    TaskStatusChanged,
    TaskVanished,
)
from schemas.events import event_type

__all__ = ["describe", "what_happened"]


def _status(status: Status) -> str:
    return f"{status.state.value}({status.raw})"


def describe(event: Event) -> str:
    stamp = event.observed_at.astimezone().strftime("%H:%M:%S")
    return f"{stamp}  {event.vendor}/{event.account}  {event_type(event):<20} {what_happened(event)}"


def what_happened(event: Event) -> str:
    """The event's own part of a line: what changed, and the entity's name when it has one."""
    match event:
        case TaskAppeared():
            what = f"{event.kind.value} {event.entity_id} appeared: {_status(event.current)}"
        case TaskStatusChanged() | JobStatusChanged():
            what = (
                f"{event.kind.value} {event.entity_id}: {_status(event.previous)} -> {_status(event.current)}"
            )
        case TaskProgress():
            total = "?" if event.total is None else event.total
            done = f"{event.previous_completed} -> {event.completed}/{total}"
            what = f"{event.kind.value} {event.entity_id}: {done}"
        case TaskVanished():
            what = f"{event.kind.value} {event.entity_id} vanished (was {_status(event.previous)})"
        case CallFinished():
            task = event.task_id or "?"
            what = f"call {event.call_id} of task {task}: {event.outcome.value}({event.raw_outcome})"
            if event.callee_number:
                what += f" to {event.callee_number}"
            if event.duration_seconds is not None:
                what += f", {event.duration_seconds}s"
            what += f" (by {event.learned_by})"
        case SourceDegraded():
            what = f"{event.api} DEGRADED ({event.reason.value}): {event.detail}"
        case SourceRecovered():
            what = f"{event.api} recovered after {event.degraded_seconds:.1f}s"
    name = getattr(event, "name", None)
    return f'{what}  "{name}"' if name else what
