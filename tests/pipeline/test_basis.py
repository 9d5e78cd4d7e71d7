"""The differ's fast path (a basis from the last cycle) gives exactly what the plain path gives.

A listing that reuses snapshot objects (``SeenItems``) lets a cycle skip, in bulk, every entity
whose snapshot is the very object the last cycle applied. The property below runs generated
cycles twice, once handing each cycle a basis (the last one, an older one, or one whose state was
changed since) and once never: events, state and changed ids must be the same after every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.pipeline.differ import Basis, Diff, MassVanish, SweepDiff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import PersonalDataPolicy, Privacy
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation
from poller.pipeline.state import SourceState
from poller.vendors.listing import Listing
from schemas import CallOutcome, EntityKind, EventBase, TaskState
from tests.pipeline.builders import NOW

SRC = SourceId(vendor="v", account="a", scope="s")
PRIVACY = Privacy(PersonalDataPolicy.MASK)
GUARD = MassVanish(fraction=0.5, minimum=1)
IDS = [f"e{n}" for n in range(7)]
#: raw state → normalized: the last ones are terminal, so jobs report their call
RAW = {"A": TaskState.PENDING, "B": TaskState.RUNNING, "C": TaskState.COMPLETED, "D": TaskState.FAILED}


def build(entity_id: str, variant: int) -> EntitySnapshot:
    """The snapshot of one entity in one of a few variants: state, progress and name move apart."""
    raw = "ABCD"[variant % 4]
    job = entity_id in ("e5", "e6")
    call = None
    if job and RAW[raw].terminal:
        call = CallSnapshot(
            call_id=entity_id,
            task_id="group",
            outcome=CallOutcome.ANSWERED if raw == "C" else CallOutcome.FAILED,
            raw_outcome=raw,
            attempt=raw,
            callee_number="13512345678",
        )
    return EntitySnapshot(
        kind=EntityKind.JOB if job else EntityKind.TASK,
        id=entity_id,
        state=RAW[raw],
        raw_state=raw,
        parent_id="group" if job else None,
        name=f"n{variant // 4}",
        completed=variant % 3 if entity_id == "e0" else None,
        total=2 if entity_id == "e0" else None,
        call=call,
    )


def summary(variant: int) -> EntitySnapshot:
    """A job group's counts over the listing (applied after the vanish decision)."""
    return EntitySnapshot(
        kind=EntityKind.JOB_GROUP,
        id="group",
        state=TaskState.RUNNING,
        raw_state="Executing",
        completed=variant,
        total=3,
        summary=True,
    )


@dataclass(frozen=True)
class Cycle:
    #: each item: (entity, variant, a fresh object instead of the one built before)
    pages: list[list[tuple[str, int, bool]]]
    #: pages applied as read (else only the observation, at the end)
    streamed: bool
    complete: bool
    #: a job group's counts at the end of the observation
    summary: int | None
    #: how the cycle ends: finished, failed, cut short after ``acked`` events, or refused by NATS
    end: str
    acked: int
    #: the basis the fast run hands it: the last one handed out, the first, or none
    basis: str


items = st.tuples(st.sampled_from(IDS), st.integers(0, 7), st.booleans())
cycles = st.lists(
    st.builds(
        Cycle,
        pages=st.lists(st.lists(items, max_size=5), max_size=4),
        streamed=st.booleans(),
        complete=st.booleans(),
        summary=st.none() | st.integers(0, 2),
        end=st.sampled_from(["finish", "finish", "finish", "unfinished", "acked", "rejected"]),
        acked=st.integers(0, 6),
        basis=st.sampled_from(["last", "last", "last", "older", "none"]),
    ),
    min_size=1,
    max_size=8,
)
Pool = dict[tuple[str, int], EntitySnapshot]


@dataclass
class World:
    """One run of the cycles: the committed state and the bases the finished cycles handed out."""

    state: SourceState = field(default_factory=SourceState)
    bases: list[Basis] = field(default_factory=list)
    seq: int = 0


def run_cycle(world: World, cycle: Cycle, pool: Pool, fast: bool) -> tuple[list[EventBase], Diff]:
    """One cycle as the source loop runs it: what it published, and its diff."""
    basis: Basis | None = None
    if fast and world.bases:
        basis = {"last": world.bases[-1], "older": world.bases[0], "none": None}[cycle.basis]
    sweep = SweepDiff(SRC, world.state, PRIVACY, GUARD, basis=basis)
    listing = Listing(None)
    published: list[EventBase] = []
    for raw_page in cycle.pages:
        page = []
        for entity_id, variant, fresh in raw_page:
            snap = pool.setdefault((entity_id, variant), build(entity_id, variant))
            page.append(build(entity_id, variant) if fresh else snap)
        listing.keep(page)
        if cycle.streamed:
            events = sweep.apply(page, NOW)
            if events:
                world.seq += len(events)
                published += events
                sweep.published(world.seq)
    entities = listing.snapshots()
    if cycle.summary is not None:
        entities.append(summary(cycle.summary))
    if cycle.end == "unfinished":
        d = sweep.unfinished()
        world.state = d.state
        return published, d
    d = sweep.finish(Observation(entities=entities, complete=cycle.complete), NOW)
    if cycle.end == "rejected":  # NATS refused the cycle's last events: the committed state stays
        return published, Diff(events=[], state=world.state, changed=set())
    if cycle.end == "acked":
        acked = d.events[: cycle.acked]
        world.state = sweep.acked_only(acked)
        return published + acked, Diff(events=acked, state=world.state, changed=d.changed)
    world.state = d.state
    assert d.basis is not None
    world.bases.append(d.basis)
    return published + d.events, d


def encoded(state: SourceState) -> bytes:
    """The state, its entities in order."""
    entities = list(state.entities.items())
    return msgspec.json.encode([entities, state.cursors, state.vanish_held, state.stream_seq])


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cycles=cycles)
def test_a_basis_changes_nothing_but_the_work(cycles: list[Cycle]) -> None:
    pool: Pool = {}  # what SeenItems would hand out again
    fast, plain = World(), World()
    for number, cycle in enumerate(cycles):
        fast_events, fast_diff = run_cycle(fast, cycle, pool, fast=True)
        plain_events, plain_diff = run_cycle(plain, cycle, pool, fast=False)
        where = f"cycle {number}"
        assert msgspec.json.encode(fast_events) == msgspec.json.encode(plain_events), where
        assert encoded(fast.state) == encoded(plain.state), where
        assert fast_diff.changed == plain_diff.changed, where


def test_a_steady_page_is_skipped_without_being_diffed() -> None:
    """The fast path does engage: a page of the last cycle's own snapshots leaves nothing to diff."""
    snaps = [build(entity_id, 1) for entity_id in IDS]
    first = SweepDiff(SRC, SourceState(), PRIVACY).finish(Observation(entities=snaps, complete=True), NOW)
    sweep = SweepDiff(SRC, first.state, PRIVACY, basis=first.basis)
    assert sweep._admit(list(snaps)) == []
    changed = [*snaps[:3], build("e3", 2), *snaps[4:]]
    again = SweepDiff(SRC, first.state, PRIVACY, basis=first.basis)
    assert again._admit(changed) == [changed[3]], "only the rebuilt snapshot is diffed"
    # a state that moved since the basis (a replay, an acked prefix) takes the plain path
    moved = msgspec.structs.replace(first.state, entities={**first.state.entities})
    moved.entities["e0"] = msgspec.structs.replace(moved.entities["e0"], seq=9)
    plain = SweepDiff(SRC, moved, PRIVACY, basis=first.basis)
    assert plain._admit(list(snaps)) == snaps


def test_a_finished_sweep_applies_nothing_more() -> None:
    sweep = SweepDiff(SRC, SourceState(), PRIVACY)
    sweep.finish(Observation(entities=[build("e1", 0)], complete=True), NOW)
    with pytest.raises(RuntimeError):
        sweep.apply([build("e2", 0)], NOW)


def test_an_entity_listed_twice_counts_once_and_a_missing_one_still_vanishes() -> None:
    """Seen as the basis's own snapshot, then again (moved while paging): one sighting, not two."""
    snaps = [build(entity_id, 1) for entity_id in IDS[:4]]
    first = SweepDiff(SRC, SourceState(), PRIVACY).finish(Observation(entities=snaps, complete=True), NOW)
    for again in (snaps[0], build("e0", 1), build("e0", 2)):
        sweep = SweepDiff(SRC, first.state, PRIVACY, basis=first.basis)
        pages = [snaps[:2], [again, snaps[2]]]  # e3 is gone; e0 comes twice
        events = [event for page in pages for event in sweep.apply(page, NOW)]
        listing = Listing(None)
        for page in pages:
            listing.keep(page)
        done = sweep.finish(Observation(entities=listing.snapshots(), complete=True), NOW)
        kinds = [(type(e).__name__, e.entity_id) for e in [*events, *done.events]]  # type: ignore[attr-defined]
        assert ("TaskVanished", "e3") in kinds, again
