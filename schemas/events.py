"""Event payloads published to NATS.

Every event is a frozen, keyword-only msgspec Struct tagged by ``type``, so one
``msgspec.json.Decoder(Event)`` decodes any of them. ``event_id`` is deterministic: the same change
derived twice (for example after a crash) has the same id and JetStream drops the second copy, while
two distinct changes of one entity (A→B, B→A, A→B) differ by the entity's change counter ``seq``.

Every field carries a description (and a unit where it is a quantity) that the generated JSON
Schema and AsyncAPI document repeat, so a consumer in any language reads the same contract. Changes
are additive: a new field always has a default, so payloads published under an older
``schema_version`` still decode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from .enums import CallOutcome, DegradeReason, EntityKind, TaskState

#: the contract version this code publishes; payloads without the field were published under 1
SCHEMA_VERSION = 2


def _meta(description: str, *, unit: str | None = None, date_time: bool = False) -> msgspec.Meta:
    """A field's description, with its unit and time format also machine-readable in the schema."""
    extra: dict[str, Any] = {}
    if unit is not None:
        extra["x-unit"] = unit
        description = f"{description} (unit: {unit})"
    if date_time:
        extra["format"] = "date-time"
    return msgspec.Meta(description=description, extra_json_schema=extra or None)


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """A normalized state and the vendor's raw value it came from."""

    state: Annotated[TaskState, _meta("the vendor-neutral state (route and alert on this)")]
    raw: Annotated[
        str,
        _meta("the vendor's own status value, verbatim (empty where the vendor reports none)"),
    ]


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    schema_version: Annotated[
        int,
        _meta(
            "version of this contract the payload was published under; absent before version 2, "
            "and since every change is additive an older payload decodes with new fields at their "
            "defaults",
            unit="contract version number",
        ),
    ] = SCHEMA_VERSION
    event_id: Annotated[
        str,
        _meta(
            "deterministic id of this change (also the Nats-Msg-Id header): the same change "
            "derived twice has the same id, so a consumer can de-duplicate on it"
        ),
    ]
    vendor: Annotated[
        str, _meta("the platform: tencent-ccc, alibaba-outboundbot, alibaba-aiccs, byrobot, ...")
    ]
    account: Annotated[str, _meta("the configured account name the event belongs to")]
    observed_at: Annotated[
        datetime,
        _meta("when the poller observed the change (RFC 3339 with zone, UTC)", date_time=True),
    ]


_SEQ = _meta(
    "the entity's change counter: 1 at first sighting, +1 per published change of that entity",
    unit="count",
)


class EntityEvent(EventBase, frozen=True, kw_only=True):
    kind: Annotated[EntityKind, _meta("what the entity is: a task, a single-callee job or a job group")]
    entity_id: Annotated[str, _meta("the vendor's id of the task, job or job group")]
    parent_id: Annotated[
        str | None,
        _meta("the vendor's id of the entity this one belongs to (a job's job group, ...), if any"),
    ] = None
    name: Annotated[str | None, _meta("the entity's display name at the vendor, if it has one")] = None
    seq: Annotated[int, _SEQ]


_COMPLETED = _meta("callees (or jobs) finished so far, as the vendor counts them", unit="count")
_TOTAL = _meta("callees (or jobs) in the entity, as the vendor counts them", unit="count")


class TaskAppeared(EntityEvent, frozen=True, kw_only=True, tag="task-appeared"):
    """First sighting of a task, job or job group (also every entity on the very first poll)."""

    current: Annotated[Status, _meta("the entity's status when first seen")]
    completed: Annotated[int | None, _COMPLETED] = None
    total: Annotated[int | None, _TOTAL] = None
    initial_inventory: Annotated[
        bool | None,
        _meta(
            "true: the entity already existed when the poller first listed this source (its "
            "initial inventory, not a new task); false: it appeared since (created, or back after "
            "vanishing); null: published before schema version 2"
        ),
    ] = None


class TaskStatusChanged(EntityEvent, frozen=True, kw_only=True, tag="task-status-changed"):
    """A task or job group changed status."""

    previous: Annotated[Status, _meta("the status before the change")]
    current: Annotated[Status, _meta("the status after the change")]


class JobStatusChanged(EntityEvent, frozen=True, kw_only=True, tag="job-status-changed"):
    """A single-callee job (Alibaba OutboundBot) changed status."""

    previous: Annotated[Status, _meta("the status before the change")]
    current: Annotated[Status, _meta("the status after the change")]


class TaskProgress(EntityEvent, frozen=True, kw_only=True, tag="task-progress"):
    """A task's or job group's completed or total count changed."""

    previous_completed: Annotated[
        int | None, _meta("the completed count before the change (null if unknown)", unit="count")
    ]
    completed: Annotated[int, _COMPLETED]
    total: Annotated[int | None, _TOTAL]
    by_state: Annotated[
        dict[str, int] | None,
        _meta("jobs counted per normalized state (job groups only)", unit="count"),
    ] = None


class TaskVanished(EntityEvent, frozen=True, kw_only=True, tag="task-vanished"):
    """A complete listing no longer contains an entity it used to contain."""

    previous: Annotated[Status, _meta("the last status seen before the entity vanished")]


class CallDetail(msgspec.Struct, frozen=True, kw_only=True):
    """Optional enrichment (BYRobot phoneLogInfo)."""

    turns: Annotated[int | None, _meta("dialogue turns between the robot and the callee", unit="count")] = (
        None
    )
    hung_up_by: Annotated[str | None, _meta("who ended the call, as the vendor names it")] = None
    results: Annotated[
        dict[str, str],
        _meta("the robot's conclusions by label (intent level, ...), as the vendor gives them"),
    ] = {}


_CALL_TIME = (
    "(RFC 3339 with the vendor's zone offset); null when the vendor gives none, or gives one the "
    "poller cannot read (never the vendor's text as it came)"
)


CallLearnedBy = Literal["poll", "push"]


class CallFinished(EventBase, frozen=True, kw_only=True, tag="call-finished"):
    """One call ended: its normalized outcome, and the vendor's raw values beside it."""

    call_id: Annotated[str, _meta("the vendor's id of the call (OutboundBot: the job id)")]
    task_id: Annotated[str, _meta("the vendor's id of the task or job group that placed the call")]
    outcome: Annotated[CallOutcome, _meta("the vendor-neutral outcome (route and alert on this)")]
    raw_outcome: Annotated[str, _meta("the vendor's own outcome value, verbatim")]
    failure_reason: Annotated[
        str | None, _meta("the vendor's failure reason, verbatim, when the call was not answered")
    ] = None
    callee_number: Annotated[
        str | None, _meta("the callee's phone number after the privacy policy (masked or hashed by default)")
    ] = None
    callee_name: Annotated[
        str | None, _meta("the callee's name after the privacy policy (masked by default)")
    ] = None
    duration_seconds: Annotated[
        int | None,
        _meta(
            "talk time: from the callee answering to hang-up, as the vendor reports it (0 when the "
            "call was not answered; null when the vendor gives none)",
            unit="seconds",
        ),
    ] = None
    started_at: Annotated[str | None, _meta(f"when the call was placed {_CALL_TIME}", date_time=True)] = None
    ended_at: Annotated[str | None, _meta(f"when the call ended {_CALL_TIME}", date_time=True)] = None
    detail: Annotated[CallDetail | None, _meta("the vendor's call log details, where it gives them")] = None
    vendor_call_id: Annotated[
        str | None,
        _meta(
            "the vendor's own id of this call or session (Tencent SessionId, AICCS call id, "
            "BYRobot callInstanceId, OutboundBot job id)"
        ),
    ] = None
    caller_number: Annotated[
        str | None, _meta("the calling line after the privacy policy (masked or hashed by default)")
    ] = None
    talk_seconds: Annotated[
        int | None, _meta("from answer to hang-up; 0 when never answered", unit="seconds")
    ] = None
    ring_seconds: Annotated[
        int | None, _meta("from the start of ringing to answer or give-up", unit="seconds")
    ] = None
    learned_by: Annotated[
        CallLearnedBy,
        _meta(
            "how the poller learned of the call: poll or push (informational; the same call by "
            "either path has the same event_id)"
        ),
    ] = "poll"


_EPISODE = _meta(
    "the source's degradation episode counter: one degraded and one recovered per episode", unit="count"
)
_API = _meta("the vendor API (action or path) whose answers caused the episode")


_SCOPE = (
    "the polled unit within the account, matching source-degraded with its source-recovered: the "
    'SdkAppId (tencent-ccc), the job group (alibaba-outboundbot), the company id (byrobot), or "" '
    "for a whole account (alibaba-aiccs, huawei-aicc)"
)


class SourceDegraded(EventBase, frozen=True, kw_only=True, tag="source-degraded"):
    """One per episode: the poller cannot get good answers from this API.

    ``(vendor, account, scope, episode)`` matches it with its ``source-recovered``.
    """

    api: Annotated[str, _API]
    reason: Annotated[DegradeReason, _meta("why the source is degraded (route and alert on this)")]
    detail: Annotated[str, _meta("a short human-readable explanation, free of secrets and personal data")]
    episode: Annotated[int, _EPISODE]
    scope: Annotated[str, _meta(_SCOPE)] = ""
    first_failed_at: Annotated[
        datetime | None,
        _meta(
            "when the episode's first failed request was sent (its first attempt, before retries "
            "and backoff); degraded_seconds of the matching source-recovered counts from here; "
            "absent in events before schema version 2",
            date_time=True,
        ),
    ] = None


class SourceRecovered(EventBase, frozen=True, kw_only=True, tag="source-recovered"):
    """The end of the episode of the ``source-degraded`` with the same scope and episode."""

    api: Annotated[str, _API]
    episode: Annotated[int, _EPISODE]
    degraded_seconds: Annotated[
        float,
        _meta(
            "how long the episode lasted: from the first failed request (its "
            "source-degraded's first_failed_at) to the end of the first good poll cycle after it",
            unit="seconds",
        ),
    ]
    scope: Annotated[str, _meta(_SCOPE)] = ""


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
