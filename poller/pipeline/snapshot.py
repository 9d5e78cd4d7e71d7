"""Normalized snapshots: what a vendor adapter hands to the differ.

Vendor-neutral records with the raw vendor values kept beside the normalized ones. Adapters build
these from their wire models; nothing vendor-specific passes this point.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgspec

from schemas import CallDetail, CallOutcome, EntityKind, TaskState
from schemas.events import CallLearnedBy


class CallSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One finished call. Personal fields are raw here; the privacy policy applies at event build."""

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
    #: what tells this call apart from other calls under the same ``call_id`` (a job's terminal
    #: outcome for OutboundBot; "" where the call id is already one call). With ``call_id`` it makes
    #: the ``call-finished`` event id, so a call is reported under one id whatever its entity did.
    attempt: str = ""
    vendor_call_id: str | None = None
    caller_number: str | None = None
    talk_seconds: int | None = None
    ring_seconds: int | None = None
    learned_by: CallLearnedBy = "poll"


class EntitySnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A task, job or job group as one listing saw it.

    ``call`` is set for single-callee jobs (OutboundBot): when such a job enters a terminal state,
    the differ emits ``call-finished`` from it.
    """

    kind: EntityKind
    id: str
    state: TaskState
    raw_state: str
    parent_id: str | None = None
    name: str | None = None
    completed: int | None = None
    total: int | None = None
    by_state: dict[str, int] | None = None
    call: CallSnapshot | None = None
    #: counts over this very listing (a job group's jobs per state): not applied while the
    #: listing's losses are held as a mass disappearance, so they cannot drop and climb back
    summary: bool = False


class Observation(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything one poll cycle of one source learned.

    ``complete`` says the entity listing covered everything the source owns, so an entity missing
    from it has vanished. A partial listing still reports the changes it saw but never a vanish.
    ``cursors`` are committed together with the state, only after every event is acked.
    """

    entities: list[EntitySnapshot]
    complete: bool
    calls: list[CallSnapshot] = []
    cursors: dict[str, int] = {}


PageSink = Callable[[Sequence[EntitySnapshot]], Awaitable[None]]
"""Where an adapter hands each page's snapshots as soon as the page is read (see ``Listing``)."""
