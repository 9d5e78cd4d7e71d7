"""Event payloads published to NATS.

Every event is a frozen, keyword-only msgspec Struct tagged by ``type``, so one
``msgspec.json.Decoder(Event)`` decodes any of them. ``event_id`` is deterministic: the same change
derived twice (for example after a crash) has the same id and JetStream drops the second copy, while
two distinct changes of one entity (A→B, B→A, A→B) differ by the entity's change counter ``seq``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from schemas.enums import CallOutcome, DegradeReason, EntityKind, TaskState


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """A normalized state and the vendor's raw value it came from."""

    state: TaskState
    raw: str


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    event_id: str
    vendor: str
    account: str
    observed_at: datetime


class EntityEvent(EventBase, frozen=True, kw_only=True):
    kind: EntityKind
    entity_id: str
    parent_id: str | None = None
    name: str | None = None
    seq: int


class TaskAppeared(EntityEvent, frozen=True, kw_only=True, tag="task-appeared"):
    """First sighting of a task, job or job group (also every entity on the very first poll)."""

    current: Status
    completed: int | None = None
    total: int | None = None


class TaskStatusChanged(EntityEvent, frozen=True, kw_only=True, tag="task-status-changed"):
    previous: Status
    current: Status


class JobStatusChanged(EntityEvent, frozen=True, kw_only=True, tag="job-status-changed"):
    """A single-callee job (Alibaba OutboundBot) changed status."""

    previous: Status
    current: Status


class TaskProgress(EntityEvent, frozen=True, kw_only=True, tag="task-progress"):
    previous_completed: int | None
    completed: int
    total: int | None
    by_state: dict[str, int] | None = None


class TaskVanished(EntityEvent, frozen=True, kw_only=True, tag="task-vanished"):
    """A complete listing no longer contains an entity it used to contain."""

    previous: Status


class CallDetail(msgspec.Struct, frozen=True, kw_only=True):
    """Optional enrichment (BYRobot phoneLogInfo)."""

    turns: int | None = None
    hung_up_by: str | None = None
    results: dict[str, str] = {}


CallLearnedBy = Literal["poll", "push"]


class CallFinished(EventBase, frozen=True, kw_only=True, tag="call-finished"):
    """One finished call attempt. Its ``event_id`` derives from the call's identity alone, so the
    same call learned by push and by polling is one message on the stream (the first one wins)."""

    call_id: str
    task_id: str
    outcome: CallOutcome
    raw_outcome: str
    failure_reason: str | None = None
    callee_number: Annotated[
        str | None,
        msgspec.Meta(description="The called number, masked or hashed by the personal-data policy."),
    ] = None
    callee_name: str | None = None
    duration_seconds: Annotated[
        int | None, msgspec.Meta(description="The vendor's call duration, in whole seconds.")
    ] = None
    started_at: Annotated[
        str | None, msgspec.Meta(description="When the call started, ISO 8601 with offset.")
    ] = None
    ended_at: Annotated[
        str | None, msgspec.Meta(description="When the call ended, ISO 8601 with offset.")
    ] = None
    detail: CallDetail | None = None
    vendor_call_id: Annotated[
        str | None,
        msgspec.Meta(
            description="The vendor's own id of this call or session (Tencent SessionId, AICCS call id, "
            "BYRobot callInstanceId, OutboundBot job id)."
        ),
    ] = None
    caller_number: Annotated[
        str | None,
        msgspec.Meta(description="The calling line, masked or hashed by the personal-data policy."),
    ] = None
    talk_seconds: Annotated[
        int | None,
        msgspec.Meta(description="Seconds from answer to hang-up, whole seconds; 0 when never answered."),
    ] = None
    ring_seconds: Annotated[
        int | None,
        msgspec.Meta(description="Seconds from the start of ringing to answer or give-up, whole seconds."),
    ] = None
    learned_by: Annotated[
        CallLearnedBy,
        msgspec.Meta(
            description="How the poller learned of the call: `poll` or `push` (informational; the same "
            "call by either path has the same event_id)."
        ),
    ] = "poll"


class SourceDegraded(EventBase, frozen=True, kw_only=True, tag="source-degraded"):
    """One per episode: the poller cannot get good answers from this API."""

    api: str
    reason: DegradeReason
    detail: str
    episode: int


class SourceRecovered(EventBase, frozen=True, kw_only=True, tag="source-recovered"):
    api: str
    episode: int
    degraded_seconds: float


Event = (
    TaskAppeared
    | TaskStatusChanged
    | JobStatusChanged
    | TaskProgress
    | TaskVanished
    | CallFinished
    | SourceDegraded
    | SourceRecovered
)

EVENT_TYPES: tuple[type[EventBase], ...] = (
    TaskAppeared,
    TaskStatusChanged,
    JobStatusChanged,
    TaskProgress,
    TaskVanished,
    CallFinished,
    SourceDegraded,
    SourceRecovered,
)

encoder = msgspec.json.Encoder()
decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def event_type(event: EventBase) -> str:
    """The ``type`` tag (also the last subject token): static per class, so read from its config."""
    return str(type(event).__struct_config__.tag)
