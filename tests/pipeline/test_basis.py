"""The differ's fast path (a basis from the last cycle) gives exactly what the plain path gives.

A listing that reuses snapshot objects (``SeenItems``) lets a cycle skip, in bulk, every entity
whose snapshot is the very object the last cycle applied. The property below runs generated
cycles twice, once handing each cycle a basis (the last one, an older one, or one whose state was
changed since) and once never: events, state and changed ids must be the same after every cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
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


Page = list[tuple[str, int, bool]]


@dataclass(frozen=True)
class Cycle:
    #: each item: (entity, variant, a fresh object instead of the one built before)
    pages: list[Page]
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


#: mostly the variant of the cycle before, so mostly the snapshot object it applied
variants = st.sampled_from([0] * 12 + [1, 2, 5])
fresh = st.sampled_from([False] * 9 + [True])


@st.composite
def listed_in_order(draw: st.DrawFn) -> list[Page]:
    """The world in its order, some of it gone, a few entities twice, cut into pages read in any order."""
    items = [(entity_id, draw(variants), draw(fresh)) for entity_id in IDS if draw(st.integers(0, 9))]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):  # moved while paging: seen on two pages
        at = draw(st.integers(0, len(items)))
        items.insert(at, (draw(st.sampled_from(IDS)), draw(variants), draw(fresh)))
    size = draw(st.sampled_from([3, 3, 3, 2, 4]))
    pages = [items[at : at + size] for at in range(0, len(items), size)]
    turn = draw(st.sampled_from([0, 0, 0, 1, 2])) % max(1, len(pages))
    return pages[turn:] + pages[:turn]


anyhow = st.lists(
    st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 7), st.booleans()), max_size=5), max_size=4
)
cycles = st.lists(
    st.builds(
        Cycle,
        pages=listed_in_order() | listed_in_order() | anyhow,
        streamed=st.booleans(),
        complete=st.booleans(),
        summary=st.none() | st.integers(0, 2),
        end=st.sampled_from(["finish"] * 5 + ["unfinished", "acked", "rejected"]),
        acked=st.integers(0, 6),
        basis=st.sampled_from(["last"] * 5 + ["older", "none"]),
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


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


@st.composite
def steady_cycles(draw: st.DrawFn) -> list[Cycle]:
    """A first listing in pages, then sweeps that list it again with a few edits each.

    The regime the fast path is for: most pages line up with the last cycle's layout, and the edits
    (changes, rebuilt objects, entities gone or seen twice, other page cuts and orders) put the
    exceptions at every place of a page.
    """
    world = {entity_id: 0 for entity_id in IDS}
    out: list[Cycle] = []
    for number in range(draw(st.integers(2, 4))):
        listed = dict(world)
        rebuilt: set[str] = set()
        twice: list[tuple[int, str, int, bool]] = []
        for _ in range(draw(st.integers(0, 3)) if number else 0):
            edit, entity_id = (
                draw(st.sampled_from(["change", "rebuild", "gone", "twice"])),
                draw(st.sampled_from(IDS)),
            )
            if edit == "change":
                world[entity_id] = listed[entity_id] = draw(st.integers(0, 7))
            elif edit == "rebuild":
                rebuilt.add(entity_id)
            elif edit == "gone":
                listed.pop(entity_id, None)
            else:
                twice.append(
                    (draw(st.integers(0, len(IDS))), entity_id, draw(st.integers(0, 7)), draw(st.booleans()))
                )
        items = [(entity_id, variant, entity_id in rebuilt) for entity_id, variant in listed.items()]
        for at, entity_id, variant, fresh in twice:
            items.insert(at, (entity_id, variant, fresh))
        size = draw(st.sampled_from([3, 3, 3, 2, 4])) if number else 3
        pages = [items[at : at + size] for at in range(0, len(items), size)]
        turn = draw(st.sampled_from([0, 0, 1])) % max(1, len(pages))
        out.append(
            Cycle(
                pages=pages[turn:] + pages[:turn],
                streamed=draw(st.sampled_from([True, True, False])),
                complete=draw(st.sampled_from([True, True, False])),
                summary=None,
                end=draw(st.sampled_from(["finish"] * 6 + ["unfinished", "acked", "rejected"]))
                if number
                else "finish",
                acked=draw(st.integers(0, 3)),
                basis="last",
            )
        )
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cycles=steady_cycles())
def test_a_basis_changes_nothing_on_steady_sweeps_with_a_few_edits(cycles: list[Cycle]) -> None:
    test_a_basis_changes_nothing_but_the_work.hypothesis.inner_test(cycles)  # type: ignore[attr-defined]


def both_ways(first: list[list[EntitySnapshot]], then: list[list[EntitySnapshot]]) -> list[EventBase]:
    """The events of ``then`` after ``first``, with the basis ``first`` hands out and without it."""
    runs = []
    for fast in (True, False):
        start = SweepDiff(SRC, SourceState(), PRIVACY)
        for page in first:
            start.apply(page, NOW)
        begun = start.finish(Observation(entities=[s for p in first for s in p], complete=True), NOW)
        sweep = SweepDiff(SRC, begun.state, PRIVACY, basis=begun.basis if fast else None)
        events = [event for page in then for event in sweep.apply(page, NOW)]
        listing = Listing(None)
        for page in then:
            listing.keep(page)
        done = sweep.finish(Observation(entities=listing.snapshots(), complete=True), NOW)
        runs.append((msgspec.json.encode([*events, *done.events]), encoded(done.state)))
    assert runs[0] == runs[1]
    return msgspec.json.decode(runs[0][0])  # type: ignore[no-any-return]


def test_an_id_twice_in_one_page_is_read_in_order_whichever_copy_lines_up() -> None:
    a, b, c = (build(entity_id, 0) for entity_id in ("e1", "e2", "e3"))
    moved = build("e3", 1)
    # the copy that lines up with the layout comes after another copy of its id, in one page
    events = both_ways([[a, b, c]], [[a, moved, c]])
    assert [(e["type"], e["entity_id"]) for e in events] == [
        ("task-status-changed", "e3"),
        ("task-status-changed", "e3"),  # back: the later copy wins
        ("task-vanished", "e2"),
    ]


def test_an_id_applied_before_in_the_cycle_is_diffed_again_when_its_old_copy_lines_up() -> None:
    a, b, c, d = (build(entity_id, 0) for entity_id in ("e1", "e2", "e3", "e4"))
    moved = build("e3", 1)
    both_ways([[a, b], [c, d]], [[moved], [a, b], [c, d]])  # moved, then the old copy in line
    both_ways([[a, b], [c, d]], [[a, b], [c, d], [moved]])  # the old copy in line, then moved
    both_ways([[a, b], [c, d]], [[a, b], [c, d], [c]])  # the same copy twice


def test_a_sweep_told_not_to_hands_on_no_basis() -> None:
    """A listing that reuses no snapshot would only keep the last cycle's snapshots alive."""
    observation = Observation(entities=[build("e1", 0)], complete=True)
    assert SweepDiff(SRC, SourceState(), PRIVACY, hand_on=False).finish(observation, NOW).basis is None
    assert SweepDiff(SRC, SourceState(), PRIVACY).finish(observation, NOW).basis is not None
