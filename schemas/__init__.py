"""The aicc-poller event contract: import this package to decode what the poller publishes.

import msgspec
from schemas import Event
event = msgspec.json.decode(payload, type=Event)
"""

from schemas.enums import CallOutcome, DegradeReason, EntityKind, TaskState
from schemas.events import (
    EVENT_TYPES,
    CallDetail,
    CallFinished,
    Event,
    EventBase,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    Status,
    TaskAppeared,
    TaskProgress,
    TaskStatusChanged,
    TaskVanished,
    decoder,
    encoder,
)

__all__ = [
    "EVENT_TYPES",
    "CallDetail",
    "CallFinished",
    "CallOutcome",
    "DegradeReason",
    "EntityKind",
    "Event",
    "EventBase",
    "JobStatusChanged",
    "SourceDegraded",
    "SourceRecovered",
    "Status",
    "TaskAppeared",
    "TaskProgress",
    "TaskState",
    "TaskStatusChanged",
    "TaskVanished",
    "decoder",
    "encoder",
]
