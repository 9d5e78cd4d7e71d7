"""What every informer's relist must do when entities go: shared by the vendors' informer tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from poller.pipeline.snapshot import Observation
from poller.pipeline.state import SourceState
from schemas import TaskVanished

#: one cycle of a source from a state: its observation, the state committed after it, its events
Step = Callable[[SourceState], Awaitable[tuple[Observation, SourceState, list[object]]]]


async def removed_ones_vanish_only_by_a_complete_relist(
    step: Step, remove: Callable[[], None], removed: set[str]
) -> tuple[SourceState, int]:
    """Cycles from nothing; after the second, ``remove()`` takes ``removed`` away at the vendor.

    Only a complete observation vanishes anything; targeted cycles are partial, and the pass under
    way when they were removed (it had read them, or read them by id when it missed them) may
    complete without vanishing them, the next vanishes. Returns the last state and the cycle of the
    last vanish.
    """
    state = SourceState()
    observations: list[Observation] = []
    vanished_at: int | None = None
    gone: set[str] = set()
    for cycle in range(40):
        observation, state, events = await step(state)
        observations.append(observation)
        vanishes = {e.entity_id for e in events if isinstance(e, TaskVanished)}
        assert not vanishes or observation.complete  # only a complete listing vanishes
        gone |= vanishes
        if len(gone) >= 2:  # in one pass, or over two (the one under way read one of them)
            vanished_at = cycle
            break
        if cycle == 1:
            remove()
    assert observations[0].complete  # the first cycle is one full listing
    assert vanished_at is not None, "the relist never completed"
    assert sum(o.complete for o in observations[2:vanished_at]) <= 1
    assert observations[vanished_at].complete
    assert gone == removed
    return state, vanished_at
