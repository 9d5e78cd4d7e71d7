"""Listing: the last sighting of each id, in the order the ids first came, however the pages fell."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from poller.pipeline.snapshot import EntitySnapshot
from poller.vendors.listing import Listing
from schemas import EntityKind, TaskState


def snap(entity_id: str, raw: str) -> EntitySnapshot:
    return EntitySnapshot(kind=EntityKind.TASK, id=entity_id, state=TaskState.RUNNING, raw_state=raw)


sightings = st.tuples(st.sampled_from("abcdef"), st.sampled_from("123"))
pages = st.lists(st.lists(sightings, max_size=6), max_size=5)


@given(pages=pages)
def test_the_last_sighting_of_each_id_in_first_seen_order(pages: list[list[tuple[str, str]]]) -> None:
    listing = Listing(None)
    expected: dict[str, EntitySnapshot] = {}
    for raw_page in pages:
        page = [snap(entity_id, raw) for entity_id, raw in raw_page]
        assert listing.keep(page) == tuple(page)
        for s in page:
            expected[s.id] = s
    got = listing.snapshots()
    assert len(got) == len(expected) and all(a is b for a, b in zip(got, expected.values(), strict=True))
    assert len(listing) == len(expected)
    assert all(entity_id in listing for entity_id in expected) and "z" not in listing
