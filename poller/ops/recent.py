"""The last events a poller published, as short redacted lines for the status page."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from poller.ops.redaction import Redact
from poller.ops.status import EventSummary
from schemas import (
    CallFinished,
    EventBase,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    TaskAppeared,
    TaskProgress,
    TaskStatusChanged,
    TaskVanished,
)
from schemas.events import event_type

__all__ = ["RecentEvents", "summarize"]


def summarize(event: EventBase) -> str:
    """What happened, without the callee: a status page is looked at by more people than the stream."""
    match event:
        case TaskAppeared():
            return f"{event.kind.value} {event.entity_id} appeared: {event.current.state.value}"
        case TaskStatusChanged() | JobStatusChanged():
            return (
                f"{event.kind.value} {event.entity_id}: "
                f"{event.previous.state.value} -> {event.current.state.value}"
            )
        case TaskProgress():
            total = "?" if event.total is None else str(event.total)
            return f"{event.kind.value} {event.entity_id}: {event.completed}/{total} done"
        case TaskVanished():
            return f"{event.kind.value} {event.entity_id} vanished"
        case CallFinished():
            return f"call {event.call_id} of task {event.task_id}: {event.outcome.value}"
        case SourceDegraded():
            return f"{event.api} degraded ({event.reason.value}): {event.detail}"
        case SourceRecovered():
            return f"{event.api} recovered after {event.degraded_seconds:.1f}s"
    return event_type(event)


class RecentEvents:
    """A bounded ring of summaries; the oldest fall off, so it costs the same after a month."""

    def __init__(self, redact: Redact, capacity: int = 50) -> None:
        self._redact = redact
        self._ring: deque[EventSummary] = deque(maxlen=capacity)

    def add(self, events: Iterable[EventBase]) -> None:
        now = time.time()
        for event in events:
            self._ring.append(
                EventSummary(
                    at_epoch=now,
                    vendor=event.vendor,
                    account=event.account,
                    type=event_type(event),
                    summary=self._redact(summarize(event)),
                )
            )

    def latest(self) -> list[EventSummary]:
        """Newest first."""
        return list(reversed(self._ring))
