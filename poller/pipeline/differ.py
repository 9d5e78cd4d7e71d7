"""Committed snapshot + new observation → events + next snapshot. Pure: no I/O, no clock reads.

Event ids are deterministic: a hash of the source, the entity, its change counter ``seq`` and the
new value. Re-deriving a change after a crash yields the same id (JetStream drops the copy); a new
change of the same entity, even back to an old value, yields a new one; and if the vendor moved on
while we were down (A→B published, then A→C derived), the value in the hash keeps the two apart.
"""

from __future__ import annotations

__all__ = ["Diff", "SweepDiff", "call_finished", "diff"]

import operator
import sys
from collections.abc import Iterable
from datetime import datetime

import msgspec

from poller.pipeline.identity import SourceId, event_id
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation
from poller.pipeline.state import VANISHED, EntityState, SourceState
from schemas import (
    CallFinished,
    EntityKind,
    EventBase,
    JobStatusChanged,
    Status,
    TaskAppeared,
    TaskProgress,
    TaskState,
    TaskStatusChanged,
    TaskVanished,
)


class Diff(msgspec.Struct, kw_only=True):
    events: list[EventBase]
    state: SourceState
    changed: set[str]


def _status(state: str, raw: str) -> Status:
    return Status(state=TaskState(state), raw=raw)


def _call_event(
    source: SourceId, call: CallSnapshot, privacy: Privacy, now: datetime, *identity: object
) -> CallFinished:
    return CallFinished(
        event_id=event_id(source.key, "call-finished", call.call_id, *identity),
        vendor=source.vendor,
        account=source.account,
        observed_at=now,
        call_id=call.call_id,
        task_id=call.task_id,
        outcome=call.outcome,
        raw_outcome=call.raw_outcome,
        failure_reason=call.failure_reason,
        callee_number=privacy.phone(call.callee_number),
        callee_name=privacy.name(call.callee_name),
        duration_seconds=call.duration_seconds,
        started_at=call.started_at,
        ended_at=call.ended_at,
        detail=call.detail,
        vendor_call_id=call.vendor_call_id,
        caller_number=privacy.phone(call.caller_number),
        talk_seconds=call.talk_seconds,
        ring_seconds=call.ring_seconds,
        learned_by=call.learned_by,
    )


def call_finished(source: SourceId, call: CallSnapshot, privacy: Privacy, now: datetime) -> CallFinished:
    """The event of a call polled with its observation, or pushed by the vendor: one id for both."""
    return _call_event(source, call, privacy, now, call.ended_at or "", call.raw_outcome)


class SweepDiff:
    """One poll cycle's diff, fed page by page as the adapter reads them.

    The entity map is copied once per cycle and updated in place, so the events of a page can be
    published as soon as the page is read (detection latency is then the wait for the page, not for
    the whole sweep). Vanishes are only found in :meth:`finish`, against the complete listing.
    """

    def __init__(self, source: SourceId, previous: SourceState, privacy: Privacy) -> None:
        self.source = source
        self.previous = previous
        self.privacy = privacy
        self.entities = dict(previous.entities)
        self.changed: set[str] = set()
        #: highest stream sequence of the events already published from this cycle
        self.stream_seq = previous.stream_seq
        self._applied: dict[str, EntitySnapshot] = {}
        #: how many of the previous entities this sweep has seen: all of them means none vanished
        self._seen_before = 0

    def apply(self, snapshots: Iterable[EntitySnapshot], now: datetime) -> list[EventBase]:
        """The events of these snapshots; each snapshot object is applied once per cycle."""
        events: list[EventBase] = []
        entities, changed, applied = self.entities, self.changed, self._applied
        source, privacy = self.source, self.privacy
        vendor, account, key = source.vendor, source.account, source.key
        before = self.previous.entities
        for snap in snapshots:
            prior = applied.get(snap.id)
            if prior is snap:
                continue
            if prior is None and snap.id in before:
                self._seen_before += 1
            applied[snap.id] = snap
            old = entities.get(snap.id)
            if old is not None and old.state != VANISHED:
                status_changed = old.raw != snap.raw_state
                progress_changed = snap.completed is not None and (
                    old.completed != snap.completed or old.total != snap.total
                )
                if not (status_changed or progress_changed):
                    if old.name != snap.name or old.parent != snap.parent_id:
                        entities[snap.id] = _remember(snap, old.seq)
                        changed.add(snap.id)
                    continue
                seq = old.seq + 1
                if status_changed:
                    # the call goes out before the status change: once the status is in the stream,
                    # replay treats the change as published, so the call must already be there
                    if snap.call is not None and snap.state.terminal and not TaskState(old.state).terminal:
                        events.append(_call_event(source, snap.call, privacy, now, seq, snap.raw_state))
                    status_event = JobStatusChanged if snap.kind is EntityKind.JOB else TaskStatusChanged
                    events.append(
                        status_event(
                            event_id=event_id(key, "status", snap.id, seq, snap.raw_state),
                            vendor=vendor,
                            account=account,
                            observed_at=now,
                            kind=snap.kind,
                            entity_id=snap.id,
                            parent_id=snap.parent_id,
                            name=snap.name,
                            seq=seq,
                            previous=_status(old.state, old.raw),
                            current=Status(state=snap.state, raw=snap.raw_state),
                        )
                    )
                if progress_changed:
                    assert snap.completed is not None
                    events.append(
                        TaskProgress(
                            event_id=event_id(key, "progress", snap.id, seq, snap.completed, snap.total),
                            vendor=vendor,
                            account=account,
                            observed_at=now,
                            kind=snap.kind,
                            entity_id=snap.id,
                            parent_id=snap.parent_id,
                            name=snap.name,
                            seq=seq,
                            previous_completed=old.completed,
                            completed=snap.completed,
                            total=snap.total,
                            by_state=snap.by_state,
                        )
                    )
            else:
                seq = (old.seq if old else 0) + 1
                if snap.call is not None and snap.state.terminal:
                    events.append(_call_event(source, snap.call, privacy, now, seq, snap.raw_state))
                events.append(
                    TaskAppeared(
                        event_id=event_id(key, "appeared", snap.id, seq, snap.raw_state),
                        vendor=vendor,
                        account=account,
                        observed_at=now,
                        kind=snap.kind,
                        entity_id=snap.id,
                        parent_id=snap.parent_id,
                        name=snap.name,
                        seq=seq,
                        current=Status(state=snap.state, raw=snap.raw_state),
                        completed=snap.completed,
                        total=snap.total,
                    )
                )
            entities[snap.id] = _remember(snap, seq)
            changed.add(snap.id)
        return events

    def published(self, stream_seq: int) -> None:
        """Events up to this stream sequence are acked: the committed state will reflect them."""
        self.stream_seq = max(self.stream_seq, stream_seq)

    def finish(self, observation: Observation, now: datetime) -> Diff:
        """The rest of the observation, then vanishes (complete listings only), calls and cursors."""
        entities = observation.entities
        applied = self._applied
        # a streaming adapter's observation starts with exactly the snapshots it streamed (then, say,
        # a job group's counts): checked in C, so the end of a 100k-entity sweep does not walk them
        # all again in Python (map stops at the shorter of the two)
        streamed = len(entities) >= len(applied) and all(map(operator.is_, entities, applied.values()))
        events = self.apply(entities[len(applied) :] if streamed else entities, now)
        if observation.complete:
            events.extend(self._vanished(now))
        source, privacy = self.source, self.privacy
        for call in observation.calls:
            events.append(call_finished(source, call, privacy, now))
        cursors = dict(self.previous.cursors)
        cursors.update(observation.cursors)
        return Diff(events=events, state=self._state(cursors), changed=self.changed)

    def unfinished(self) -> Diff:
        """What a failed cycle keeps: the pages already applied (their events may be published)."""
        return Diff(events=[], state=self._state(dict(self.previous.cursors)), changed=self.changed)

    def _vanished(self, now: datetime) -> list[EventBase]:
        events: list[EventBase] = []
        key, previous = self.source.key, self.previous.entities
        if self._seen_before == len(previous):
            return events  # every entity seen again: nothing to look for (the usual sweep)
        missing = previous.keys() - self._applied.keys()
        for entity_id in (k for k in previous if k in missing):
            old = previous[entity_id]
            if old.state == VANISHED:
                continue
            seq = old.seq + 1
            events.append(
                TaskVanished(
                    event_id=event_id(key, "vanished", entity_id, seq),
                    vendor=self.source.vendor,
                    account=self.source.account,
                    observed_at=now,
                    kind=EntityKind(old.kind),
                    entity_id=entity_id,
                    parent_id=old.parent,
                    name=old.name,
                    seq=seq,
                    previous=_status(old.state, old.raw),
                )
            )
            # a tombstone keeps the counter, so a task that comes back gets fresh event ids
            self.entities[entity_id] = EntityState(kind=old.kind, state=VANISHED, raw="", seq=seq)
            self.changed.add(entity_id)
        return events

    def _state(self, cursors: dict[str, int]) -> SourceState:
        previous = self.previous
        return SourceState(
            entities=self.entities, cursors=cursors, health=previous.health, stream_seq=self.stream_seq
        )


def diff(
    source: SourceId, previous: SourceState, observation: Observation, now: datetime, privacy: Privacy
) -> Diff:
    """A whole cycle at once: what :class:`SweepDiff` gives when nothing was streamed."""
    return SweepDiff(source, previous, privacy).finish(observation, now)


def _remember(snap: EntitySnapshot, seq: int) -> EntityState:
    # raw values and parents repeat across thousands of entities: one shared string each
    parent = snap.parent_id
    return EntityState(
        kind=snap.kind.value,
        state=snap.state.value,
        raw=sys.intern(snap.raw_state),
        seq=seq,
        completed=snap.completed,
        total=snap.total,
        parent=None if parent is None else sys.intern(parent),
        name=snap.name,
    )
