"""Committed snapshot + new observation → events + next snapshot. Pure: no I/O, no clock reads.

Event ids are deterministic: a hash of the source, the entity, its change counter ``seq`` and the
new value. Re-deriving a change after a crash yields the same id (JetStream drops the copy); a new
change of the same entity, even back to an old value, yields a new one; and if the vendor moved on
while we were down (A→B published, then A→C derived), the value in the hash keeps the two apart.
A ``call-finished`` id is the call's own identity (its call id and attempt), never the entity's
counter: a job that vanishes and comes back, or is re-derived, reports its call under the same id.

A complete listing that misses most of the known entities at once (:class:`MassVanish`) vanishes
nothing: the entities are marked ``held`` (committed with the state, so this survives restarts) and
vanish only if the next complete listing misses them too. One empty or truncated answer that a
vendor passes off as complete then costs a cycle of delay, not a vanish and re-appearance of all.

The state keeps an entity's name redacted (:meth:`~poller.pipeline.redact.Redactor.kept`): it is
committed to a bucket outside the process. A listing brings the raw name, so a name is compared as
it is first and redacted only when that differs: a name with nothing to redact costs no redaction,
and one with something to redact is not taken for a rename after a restart.
"""

from __future__ import annotations

__all__ = ["Basis", "Diff", "MassVanish", "PageUndo", "SweepDiff", "call_finished", "diff"]

import itertools
import operator
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from poller.pipeline.identity import SourceId, event_id
from poller.pipeline.privacy import Privacy
from poller.pipeline.redact import Redactor
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation
from poller.pipeline.state import (
    INVENTORY_LISTED,
    INVENTORY_LISTING,
    VANISHED,
    EntityState,
    SourceState,
    apply_published,
)
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


class Basis(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished cycle applied, so the next one can skip, in bulk, what did not change.

    ``layout[slots[id]]`` is the snapshot object the cycle applied last for ``id`` (None: it applied
    none), and ``entities`` is the entity map it left, a private copy: ``entities[id]`` is then an
    entity that snapshot changes nothing in. A snapshot that is that very object again (a listing
    that reuses the snapshots of unchanged items, see :class:`~poller.vendors.listing.SeenItems`),
    met by a map equal to ``entities``, gives no event and no change: the next :class:`SweepDiff`
    skips it without looking at its entity. Any other snapshot, or a map that differs in any entity
    (a replay, an acked prefix, another cycle's state), takes the plain path.

    An id keeps its slot from cycle to cycle and the first cycle lays the slots out in the order it
    applied the ids, so a page of a listing that keeps its order lines up with a run of the layout:
    its unchanged snapshots are found by comparing object identities along that run, not by looking
    each id up.
    """

    layout: tuple[EntitySnapshot | None, ...]
    slots: dict[str, int]
    entities: dict[str, EntityState]


class Diff(msgspec.Struct, kw_only=True):
    events: list[EventBase]
    state: SourceState
    changed: set[str]
    #: for the next cycle's :class:`SweepDiff` (None: this cycle did not finish)
    basis: Basis | None = None


_id_of = operator.attrgetter("id")
#: the share of a basis's layout that may be empty slots (ids gone) before it is laid out anew
_EMPTY_SLOTS = 0.25
#: the redaction of a differ given none: no configured secret, personal data masked
_MASKING = Redactor()


def _status(state: str, raw: str) -> Status:
    return Status(state=TaskState(state), raw=raw)


class MassVanish(msgspec.Struct, frozen=True, kw_only=True):
    """When a complete listing's disappearances need a second complete listing to agree.

    More than ``fraction`` of the known entities and more than ``minimum`` of them missing at once.
    """

    fraction: float = 0.5
    minimum: int = 2

    def holds(self, missing: int, known: int) -> bool:
        return missing > self.minimum and missing > self.fraction * known


def _call_event(source: SourceId, call: CallSnapshot, privacy: Privacy, now: datetime) -> CallFinished:
    return CallFinished(
        event_id=event_id(source.key, "call-finished", call.call_id, call.attempt),
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
    return _call_event(source, call, privacy, now)


@dataclass
class PageUndo:
    """What one page overwrote: each entity's state and applied snapshot before it (None: none)."""

    applied: dict[str, EntitySnapshot | None]
    entities: dict[str, EntityState | None] = field(default_factory=dict)


class SweepDiff:
    """One poll cycle's diff, fed page by page as the adapter reads them.

    The entity map is copied once per cycle and updated in place, so the events of a page can be
    published as soon as the page is read (detection latency is then the wait for the page, not for
    the whole sweep). Vanishes are only found in :meth:`finish`, against the complete listing.

    Given the last cycle's :class:`Basis`, the snapshots it applied that come back as the same
    objects are counted as seen in bulk, in C, and never diffed: on a steady sweep the per-entity
    work is then a few look-ups per page, not a Python loop over every entity.
    """

    def __init__(
        self,
        source: SourceId,
        previous: SourceState,
        privacy: Privacy,
        mass_vanish: MassVanish = MassVanish(),  # noqa: B008 - frozen, shared safely
        basis: Basis | None = None,
        *,
        hand_on: bool = True,
        redactor: Redactor | None = None,
    ) -> None:
        self.source = source
        self.previous = previous
        self.privacy = privacy
        #: the form of a name the state keeps (the service's redactor knows the configured secrets)
        self.kept: Callable[[str], str] = (redactor or _MASKING).kept
        self.mass_vanish = mass_vanish
        self.vanish_held = previous.vanish_held
        #: this cycle's complete listing lost most entities at once (their vanish is held)
        self.holding = False
        self.entities = dict(previous.entities)
        self.changed: set[str] = set()
        #: highest stream sequence of the events already published from this cycle
        self.stream_seq = previous.stream_seq
        #: the snapshot this cycle applied last per id, but for the layout's own (see ``_marked``)
        self._applied: dict[str, EntitySnapshot] = {}
        #: how many of the previous entities this sweep has seen: all of them means none vanished
        self._seen_before = 0
        #: every page applied, in order, and whether an id came twice (then the order is rebuilt)
        self._pages: list[tuple[EntitySnapshot, ...]] = []
        self._repeated = False
        cursors = previous.cursors
        #: every entity that appears is part of the source's first listing (a state committed before
        #: these cursors existed has entities, and its appearances are new)
        self.initial_inventory = INVENTORY_LISTED not in cursors and (
            not previous.entities or INVENTORY_LISTING in cursors
        )
        #: what :meth:`finish` overwrote (None: the entity was new), so :meth:`acked_only` can undo it
        self._undo: dict[str, EntityState | None] | None = None
        #: the last cycle's layout (see :class:`Basis`), trusted only while the map is the one it left
        self._layout: tuple[EntitySnapshot | None, ...] = ()
        self._slots: dict[str, int] = {}
        if basis is not None and basis.entities == previous.entities:
            self._layout, self._slots = basis.layout, basis.slots
        #: per slot: this cycle applied its id; one marked and not in ``_applied`` came as the
        #: layout's own snapshot, with its entity left as it was
        self._marked = bytearray(len(self._layout))
        #: :meth:`finish` hands the next cycle a basis (a listing that reuses no snapshot gains nothing
        #: from one, and it would keep the last cycle's snapshots alive)
        self._hand_on = hand_on

    def apply(self, snapshots: Iterable[EntitySnapshot], now: datetime) -> list[EventBase]:
        """The events of these snapshots; each snapshot object is applied once per cycle."""
        # kept until the end of the cycle, as a tuple: the caller's list may move on, and the
        # collector stops walking a tuple of objects it does not track
        page = snapshots if isinstance(snapshots, tuple) else tuple(snapshots)
        self._pages.append(page)
        todo = self._admit(page)
        return self._changes(todo, now) if todo else []

    def _admit(self, page: tuple[EntitySnapshot, ...]) -> list[EntitySnapshot]:
        """Record the page as seen; what is left to diff against the entities, in page order.

        The page's first id gives the run of the layout it should line up with. A snapshot that is
        the layout's own object at its place there is done with (see :class:`Basis`) if no snapshot
        of its id was applied before in this cycle: the run's marks say so, in C, for the whole page.
        The others are admitted one by one, as if the page were read in order; should one share an
        id with a snapshot done with in bulk, the whole page is admitted one by one instead.
        """
        layout, size = self._layout, len(page)
        start = self._slots.get(page[0].id) if layout and page else None
        if start is None:
            return self._admit_each(page)
        same = list(map(operator.is_, page, layout[start : start + size]))
        hits = same.count(True)
        if not hits:
            return self._admit_each(page)
        marked, width = self._marked, len(same)
        mask = int.from_bytes(bytes(same), "little")
        seen = int.from_bytes(marked[start : start + width], "little")
        if mask & seen:
            return self._admit_each(page)  # an id of this run was applied before in this cycle
        if hits == size:
            marked[start : start + width] = bytes(same)
            self._seen_before += hits  # each in the map the basis left, equal to ``before``
            return []
        rest = [*itertools.compress(page, map(operator.not_, same)), *page[width:]]
        for slot in map(self._slots.get, map(_id_of, rest)):
            if slot is not None and 0 <= slot - start < width and same[slot - start]:
                return self._admit_each(page)  # shares an id with one done with in bulk
        marked[start : start + width] = (mask | seen).to_bytes(width, "little")
        self._seen_before += hits
        return self._admit_each(rest)

    def _admit_each(self, snapshots: Iterable[EntitySnapshot]) -> list[EntitySnapshot]:
        """Admit snapshots one by one: each applied once per cycle, the last of an id winning.

        Without a layout, a page whose ids are all new to this cycle is admitted in bulk, in C.
        """
        applied, before, layout, slots, marked = (
            self._applied,
            self.previous.entities,
            self._layout,
            self._slots,
            self._marked,
        )
        if not layout:
            page = list(snapshots)
            ids = list(map(_id_of, page))
            if applied.keys().isdisjoint(ids):
                size = len(applied)
                applied.update(zip(ids, page, strict=True))
                if len(applied) - size == len(ids):
                    self._seen_before += sum(map(before.__contains__, ids))
                    return page
                for entity_id in ids:  # an id repeats within the page: none of them was there before
                    applied.pop(entity_id, None)
            snapshots = page
        todo = []
        for snap in snapshots:
            prior = applied.get(snap.id)
            slot = slots.get(snap.id) if layout else None
            if prior is None and slot is not None and marked[slot]:
                prior = layout[slot]  # applied earlier this cycle as the layout's own
            if prior is not None:
                self._repeated = True
                if prior is snap:
                    continue
            elif snap.id in before:
                self._seen_before += 1
            applied[snap.id] = snap
            if slot is not None:
                marked[slot] = 1
            todo.append(snap)
        return todo

    def _seen(self, entity_id: str) -> bool:
        """Whether this cycle has applied a snapshot of this id."""
        slot = self._slots.get(entity_id)
        return entity_id in self._applied or (slot is not None and bool(self._marked[slot]))

    def _streamed(self) -> tuple[int, Iterable[EntitySnapshot]]:
        """How many ids were applied, and the snapshot applied last for each, in first-applied order."""
        flat = itertools.chain.from_iterable(self._pages)
        if not self._repeated:
            return sum(map(len, self._pages)), flat  # each id came once: the pages are that order
        items = list(flat)
        last = list(dict(zip(map(_id_of, items), items, strict=True)).values())
        return len(last), last

    def _changes(self, todo: list[EntitySnapshot], now: datetime) -> list[EventBase]:
        """The events of admitted snapshots, each diffed against its entity as this cycle left it."""
        events: list[EventBase] = []
        entities, changed = self.entities, self.changed
        source, privacy, kept = self.source, self.privacy, self.kept
        vendor, account, key = source.vendor, source.account, source.key
        undo = self._undo
        for snap in todo:
            old = entities.get(snap.id)
            if undo is not None and snap.id not in undo:
                undo[snap.id] = old
            name = snap.name
            if name is not None and (old is None or old.name != name):
                name = kept(name)  # equal to the kept name: nothing in it to redact, or done before
            if old is not None and old.state != VANISHED:
                status_changed = old.raw != snap.raw_state
                progress_changed = snap.completed is not None and (
                    old.completed != snap.completed or old.total != snap.total
                )
                if not (status_changed or progress_changed):
                    if old.name != name or old.parent != snap.parent_id:
                        entities[snap.id] = _remember(snap, old.seq, name)
                        changed.add(snap.id)
                    continue
                seq = old.seq + 1
                if status_changed:
                    # the call goes out before the status change: once the status is in the stream,
                    # replay treats the change as published, so the call must already be there
                    if snap.call is not None and snap.state.terminal and not TaskState(old.state).terminal:
                        events.append(_call_event(source, snap.call, privacy, now))
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
                # back from a tombstone in the terminal state it vanished in: its call is out already
                reported = old is not None and old.raw == snap.raw_state
                if snap.call is not None and snap.state.terminal and not reported:
                    events.append(_call_event(source, snap.call, privacy, now))
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
                        initial_inventory=self.initial_inventory,
                    )
                )
            entities[snap.id] = _remember(snap, seq, name)
            changed.add(snap.id)
        return events

    def apply_page(
        self, snapshots: Sequence[EntitySnapshot], now: datetime
    ) -> tuple[list[EventBase], PageUndo]:
        """:meth:`apply`, remembering what it overwrote, so a page whose publish is cut short can be
        taken back (:meth:`take_back`) instead of committed without its events."""
        undo = PageUndo(applied={snap.id: self._applied.get(snap.id) for snap in snapshots})
        self._undo = undo.entities
        try:
            return self.apply(snapshots, now), undo
        finally:
            self._undo = None

    def take_back(self, undo: PageUndo, acked: Iterable[EventBase]) -> None:
        """A page whose publish did not finish: of its changes only the ``acked`` events stay.

        Its other events may never reach the stream, so a failed cycle must not commit them (they
        would be lost: the next cycle would find nothing changed); the next cycle derives them again.
        """
        before = self.previous.entities
        for entity_id, prior in undo.applied.items():
            if prior is None:
                if self._applied.pop(entity_id, None) is not None and entity_id in before:
                    self._seen_before -= 1
            else:
                self._applied[entity_id] = prior
        for entity_id, old in undo.entities.items():
            if old is None:
                self.entities.pop(entity_id, None)
            else:
                self.entities[entity_id] = old
        state = self._state(dict(self.previous.cursors))  # shares this cycle's entity map
        for event in acked:
            apply_published(state, event, 0, names=self.kept)

    def published(self, stream_seq: int) -> None:
        """Events up to this stream sequence are acked: the committed state will reflect them."""
        self.stream_seq = max(self.stream_seq, stream_seq)

    def finish(self, observation: Observation, now: datetime) -> Diff:
        """Calls, the rest of the observation, then vanishes (complete listings only) and cursors.

        The calls go first: a task's terminal status or progress in the stream stops its calls from
        being read again (replay applies it), so they must be stored before it.
        """
        entities = observation.entities
        self._undo = {}
        source, privacy = self.source, self.privacy
        events: list[EventBase] = [_call_event(source, call, privacy, now) for call in observation.calls]
        # a streaming adapter's observation starts with exactly the snapshots it streamed (then, say,
        # a job group's counts): checked in C, so the end of a 100k-entity sweep does not walk them
        # all again in Python (map stops at the shorter of the two)
        count, applied = self._streamed()
        streamed = len(entities) >= count and all(map(operator.is_, entities, applied))
        rest = entities[count:] if streamed else entities
        # counts over this very listing wait for the vanish decision: a held loss must not show as
        # a job group dropping to zero (and climbing back next cycle)
        summaries = [snap for snap in rest if snap.summary] if observation.complete else []
        events.extend(self.apply([snap for snap in rest if not snap.summary] if summaries else rest, now))
        if observation.complete:
            events.extend(self._vanished(now, {snap.id for snap in summaries}))
            if summaries and not self.holding:
                events.extend(self.apply(summaries, now))
        cursors = dict(self.previous.cursors)
        cursors.update(observation.cursors)
        cursors.pop(INVENTORY_LISTING, None)
        cursors[INVENTORY_LISTED] = 1
        basis = self._basis() if self._hand_on else None
        return Diff(events=events, state=self._state(cursors), changed=self.changed, basis=basis)

    def _basis(self) -> Basis:
        """What this cycle applied, for the next one, in the slots the ids already have.

        Slots of ids this cycle did not apply are emptied; new ids get slots after the others. The
        slots are laid out anew when there are none yet (in the order this cycle applied the ids),
        or when the empty ones (ids gone) have grown past a share of the layout.
        """
        applied, entities = self._applied, dict(self.entities)
        if self._layout and not applied and self._marked.find(0) < 0:
            # every slot came back as the layout's own snapshot: the layout is this cycle's too
            return Basis(layout=self._layout, slots=self._slots, entities=entities)
        layout, slots, marked = list(self._layout), self._slots, self._marked
        if layout:
            empty = marked.find(0)
            while empty >= 0:
                layout[empty] = None
                empty = marked.find(0, empty + 1)
            grown = slots
            for entity_id, snap in applied.items():
                slot = slots.get(entity_id)
                if slot is None:
                    if grown is slots:
                        grown = dict(slots)  # the last basis's slots stay as they were
                    slot = grown[entity_id] = len(layout)
                    layout.append(snap)
                else:
                    layout[slot] = snap
            slots = grown
            # a marked slot holds what this cycle applied; the unmarked ones were just emptied
            if marked.count(0) <= _EMPTY_SLOTS * len(layout):
                return Basis(layout=tuple(layout), slots=slots, entities=entities)
            kept: tuple[EntitySnapshot | None, ...] = tuple(snap for snap in layout if snap is not None)
        else:
            kept = tuple(applied.values())
        slots = dict(zip(map(_id_of, kept), range(len(kept)), strict=True))
        return Basis(layout=kept, slots=slots, entities=entities)

    def _keep_undo(self, entity_id: str) -> None:
        """Remember what :meth:`finish` is about to overwrite, for :meth:`acked_only`."""
        if self._undo is not None and entity_id not in self._undo:
            self._undo[entity_id] = self.entities.get(entity_id)

    def acked_only(self, acked: Iterable[EventBase]) -> SourceState:
        """The state when, of the events after the pages, only ``acked`` reached the stream.

        What the pages left (their events are all acked), advanced by ``acked`` alone; cursors and
        health stay as committed, since the events derived from what they skip may be missing.
        """
        for entity_id, before in (self._undo or {}).items():
            if before is None:
                self.entities.pop(entity_id, None)
            else:
                self.entities[entity_id] = before
        self._undo = None
        state = self._state(dict(self.previous.cursors))
        for event in acked:
            apply_published(state, event, 0, names=self.kept)
        state.health = self.previous.health
        return state

    def unfinished(self) -> Diff:
        """What a failed cycle keeps: the pages already applied (their events may be published)."""
        cursors = dict(self.previous.cursors)
        if self.initial_inventory and self.changed:
            cursors[INVENTORY_LISTING] = 1
        return Diff(events=[], state=self._state(cursors), changed=self.changed)

    def _vanished(self, now: datetime, summaries: set[str]) -> list[EventBase]:
        """Vanishes against the complete listing; ``summaries`` were listed but are not applied yet."""
        events: list[EventBase] = []
        key, previous = self.source.key, self.previous.entities
        held_before = self.previous.vanish_held
        seen = self._seen
        also_seen = sum(1 for i in summaries if i in previous and not seen(i))
        if self._seen_before + also_seen == len(previous) and not held_before:
            return events  # every entity seen again: nothing to look for (the usual sweep)
        entities, changed = self.entities, self.changed
        missing: list[str] = []  # in the previous map's order (so are the events)
        fresh = 0  # missing for the first time (the rest were held by the last complete listing)
        known = 0
        for entity_id, old in previous.items():
            if old.state == VANISHED:
                continue
            known += 1
            if not seen(entity_id) and entity_id not in summaries:
                missing.append(entity_id)
                fresh += not old.held
            elif old.held and entities[entity_id].held and seen(entity_id):
                self._keep_undo(entity_id)
                entities[entity_id] = msgspec.structs.replace(entities[entity_id], held=False)
                changed.add(entity_id)  # back in a complete listing: the hold is over
        gone = missing
        self.vanish_held = 0
        self.holding = self.mass_vanish.holds(fresh, known)
        if self.holding:
            # most of the world gone at once: those missing for the first time wait for the next
            # complete listing to agree; those it already held and still misses vanish now
            gone = []
            for entity_id in missing:
                if previous[entity_id].held:
                    gone.append(entity_id)
                else:
                    self._keep_undo(entity_id)
                    entities[entity_id] = msgspec.structs.replace(previous[entity_id], held=True)
                    changed.add(entity_id)
            self.vanish_held = fresh
        for entity_id in gone:
            old = previous[entity_id]
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
            # a tombstone keeps the counter, so a task that comes back gets fresh event ids, and
            # the last raw state, so a finished job that comes back unchanged is not a new call
            self._keep_undo(entity_id)
            entities[entity_id] = EntityState(kind=old.kind, state=VANISHED, raw=old.raw, seq=seq)
            changed.add(entity_id)
        return events

    def _state(self, cursors: dict[str, int]) -> SourceState:
        previous = self.previous
        return SourceState(
            entities=self.entities,
            cursors=cursors,
            health=previous.health,
            stream_seq=self.stream_seq,
            vanish_held=self.vanish_held,
        )


def diff(
    source: SourceId,
    previous: SourceState,
    observation: Observation,
    now: datetime,
    privacy: Privacy,
    redactor: Redactor | None = None,
) -> Diff:
    """A whole cycle at once: what :class:`SweepDiff` gives when nothing was streamed."""
    return SweepDiff(source, previous, privacy, redactor=redactor).finish(observation, now)


#: each kind's and state's plain value, looked up in C (the enum's ``value`` is a descriptor call)
_VALUE: dict[str, str] = {member: member.value for member in (*EntityKind, *TaskState)}


def _remember(snap: EntitySnapshot, seq: int, name: str | None) -> EntityState:
    # raw values and parents repeat across thousands of entities: one shared string each
    parent = snap.parent_id
    return EntityState(
        kind=_VALUE[snap.kind],
        state=_VALUE[snap.state],
        raw=sys.intern(snap.raw_state),
        seq=seq,
        completed=snap.completed,
        total=snap.total,
        parent=None if parent is None else sys.intern(parent),
        name=name,
    )
