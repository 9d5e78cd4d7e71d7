"""SeenItems: an item whose raw bytes are unchanged reuses its snapshot; any change is built anew."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from poller.pipeline.snapshot import EntitySnapshot
from poller.vendors.listing import SeenItems
from poller.vendors.tencent_ccc import decode_task, normalize


def raws(states: list[int]) -> list[msgspec.Raw]:
    tasks = [{"TaskId": 1000 + i, "State": state, "Name": f"t{i}"} for i, state in enumerate(states)]
    return msgspec.json.decode(msgspec.json.encode(tasks), type=list[msgspec.Raw])


def test_unchanged_items_reuse_their_snapshot_and_changed_ones_are_built() -> None:
    built: list[str] = []

    def build(raw: msgspec.Raw) -> EntitySnapshot:
        snap = normalize(decode_task(raw), "app")
        built.append(snap.id)
        return snap

    seen = SeenItems()
    first = seen.snapshots(raws([1, 1, 1]), build)
    seen.end_sweep(complete=True)
    assert built == ["1000", "1001", "1002"]
    built.clear()

    second = seen.snapshots(raws([1, 5, 1]), build)
    seen.end_sweep(complete=True)
    assert built == ["1001"]  # only the changed task is decoded and normalized again
    assert second[0] is first[0] and second[2] is first[2]
    assert (second[1].id, second[1].raw_state) == ("1001", "5")

    # a change back to an earlier value gets that value's snapshot, not the last sweep's
    third = seen.snapshots(raws([1, 1, 1]), build)
    assert third[1] is not second[1] and third[1].raw_state == "1"


def test_a_partial_sweep_keeps_what_it_did_not_read_and_complete_ones_forget_the_gone() -> None:
    calls: list[str] = []

    def build(raw: msgspec.Raw) -> EntitySnapshot:
        snap = normalize(decode_task(raw), "app")
        calls.append(snap.id)
        return snap

    seen = SeenItems()
    seen.snapshots(raws([1, 1, 1]), build)
    seen.end_sweep(complete=True)
    seen.snapshots(raws([1])[:1], build)  # a failed sweep read only the first task
    seen.end_sweep(complete=False)
    calls.clear()
    seen.snapshots(raws([1, 1, 1]), build)
    seen.end_sweep(complete=True)
    assert calls == []  # nothing rebuilt: the partial sweep forgot nothing
    seen.snapshots(raws([1]), build)  # tasks 1001 and 1002 are gone
    seen.end_sweep(complete=True)  # more of the map is stale than the slack: the next sweep records
    seen.snapshots(raws([1]), build)
    seen.end_sweep(complete=True)  # what it recorded is the map from now on
    calls.clear()
    seen.snapshots(raws([1, 1, 1]), build)
    assert calls == ["1001", "1002"]  # forgotten


def test_what_no_sweep_lists_any_more_is_pruned_past_the_slack() -> None:
    """Changed items add entries; a complete sweep drops the stale ones once they pass the slack."""
    built: list[str] = []

    def build(raw: msgspec.Raw) -> EntitySnapshot:
        snap = normalize(decode_task(raw), "app")
        built.append(snap.id)
        return snap

    seen = SeenItems()
    listed = 20
    for sweep in range(30):
        states = [1] * listed
        states[sweep % listed] = 5  # one task differs each sweep
        seen.snapshots(raws(states), build)
        seen.end_sweep(complete=True)
        # one sweep past the slack records, the next prunes: at most a sweep's changes above it
        assert len(seen) <= listed + SeenItems.SLACK * listed + 2
    built.clear()
    seen.snapshots(raws([1] * listed), build)
    assert len(built) <= 1  # the steady items were never rebuilt, pruning or not


def test_a_page_that_hashes_as_last_sweeps_is_that_page_again() -> None:
    def build(raw: msgspec.Raw) -> EntitySnapshot:
        return normalize(decode_task(raw), "app")

    seen = SeenItems()
    first = [seen.snapshots(raws([1, 1]), build), seen.snapshots(raws([2, 2])[:1], build)]
    seen.end_sweep(complete=True)
    same = seen.snapshots(raws([1, 1]), build)
    assert same is first[0]  # the very tuple: nothing looked up item by item
    moved = seen.snapshots(raws([1, 5]), build)
    assert moved is not first[0] and moved[0] is first[0][0] and moved[1].raw_state == "5"


Sweep = tuple[list[list[int]], bool]
sweeps = st.lists(
    st.tuples(st.lists(st.lists(st.integers(0, 3), max_size=4), max_size=4), st.booleans()),
    max_size=8,
)


@given(sweeps=sweeps)
def test_every_snapshot_handed_out_is_what_its_bytes_build(sweeps: list[Sweep]) -> None:
    """Whatever pages come and go, a reused snapshot is always the one its item's bytes build."""

    def build(raw: msgspec.Raw) -> EntitySnapshot:
        return normalize(decode_task(raw), "app")

    seen = SeenItems()
    for pages, complete in sweeps:
        for states in pages:
            items = raws(states)
            assert list(seen.snapshots(items, build)) == [build(raw) for raw in items]
        seen.end_sweep(complete)
