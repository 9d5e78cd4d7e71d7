"""The aicc-poller event contract: import this package to decode what the poller publishes.

import msgspec
from aicc_events import Event      # the slim distribution (schemas/pyproject.toml); in this repo: schemas
event = msgspec.json.decode(payload, type=Event)

Imports inside the package are relative, so the same files work under either name.
"""

from .enums import CallOutcome, DegradeReason, EntityKind, TaskState
from .events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
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
    "SCHEMA_VERSION",
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
