"""Event payloads published to NATS.

Every event is a frozen, keyword-only msgspec Struct tagged by ``type``, so one
``msgspec.json.Decoder(Event)`` decodes any of them. ``event_id`` is deterministic: the same change
derived twice (for example after a crash) has the same id and JetStream drops the second copy, while
two distinct changes of one entity (A→B, B→A, A→B) differ by the entity's change counter ``seq``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

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


class CallFinished(EventBase, frozen=True, kw_only=True, tag="call-finished"):
    call_id: str
    task_id: str
    outcome: CallOutcome
    raw_outcome: str
    failure_reason: str | None = None
    callee_number: str | None = None
    callee_name: str | None = None
    duration_seconds: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    detail: CallDetail | None = None


_SCOPE = (
    "the polled unit within the account, matching source-degraded with its source-recovered: the "
    'SdkAppId (tencent-ccc), the job group (alibaba-outboundbot), the company id (byrobot), or "" '
    "for a whole account (alibaba-aiccs, huawei-aicc)"
)


class SourceDegraded(EventBase, frozen=True, kw_only=True, tag="source-degraded"):
    """One per episode: the poller cannot get good answers from this API.

    ``(vendor, account, scope, episode)`` matches it with its ``source-recovered``.
    """

    api: str
    reason: DegradeReason
    detail: str
    episode: int
    scope: Annotated[str, msgspec.Meta(description=_SCOPE)] = ""
    since: Annotated[
        datetime | None,
        msgspec.Meta(
            description=(
                "when the episode's first failed request was sent (its first attempt, before retries "
                "and backoff); degraded_seconds of the matching source-recovered counts from here"
            )
        ),
    ] = None


class SourceRecovered(EventBase, frozen=True, kw_only=True, tag="source-recovered"):
    """The end of the episode of the ``source-degraded`` with the same scope and episode."""

    api: str
    episode: int
    degraded_seconds: Annotated[
        float,
        msgspec.Meta(
            description=(
                "seconds from the episode's first failed request (since of its source-degraded) to "
                "the end of the first good poll cycle after it"
            )
        ),
    ]
    scope: Annotated[str, msgspec.Meta(description=_SCOPE)] = ""


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
