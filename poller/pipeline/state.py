"""What the differ remembers of a source, and how one published event changes it.

The one home of the entity record, the ``vanished`` tombstone and :func:`apply_published`: the
differ derives events from this state and replay applies stored events to it, so both must agree.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from schemas import (
    EventBase,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    TaskAppeared,
    TaskProgress,
    TaskStatusChanged,
    TaskVanished,
)

__all__ = [
    "INVENTORY_LISTED",
    "INVENTORY_LISTING",
    "VANISHED",
    "EntityState",
    "Health",
    "SourceState",
    "apply_published",
]

#: the state of an entity a complete listing no longer shows (its counter and last raw value are kept)
VANISHED = "vanished"
#: cursor: a sweep of the source finished, so whatever appears from now on is new, not inventory
INVENTORY_LISTED = "inventory.listed"
#: cursor: the first sweep's events are (partly) out but it did not finish; the next still lists inventory
INVENTORY_LISTING = "inventory.listing"


class EntityState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the differ remembers of one entity. Kept tiny: there can be millions.

    ``name`` is redacted (:meth:`~poller.pipeline.redact.Redactor.kept`), whatever the privacy
    policy: the state is committed to a bucket outside the process. The other strings are our own
    values (kind, state) or the vendor's identities and status codes, which events carry verbatim.
    """

    kind: str
    state: str
    raw: str
    seq: int
    completed: int | None = None
    total: int | None = None
    parent: str | None = None
    name: str | None = None
    #: missed by a complete listing in a mass disappearance: it vanishes if the next one misses it too
    held: bool = False


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """Degradation episodes, committed so one outage gives one event, also across restarts."""

    episode: int = 0
    degraded: bool = False
    api: str = ""
    reason: str = ""
    since: float = 0.0


class SourceState(msgspec.Struct, kw_only=True):
    entities: dict[str, EntityState] = {}
    cursors: dict[str, int] = {}
    health: Health = Health()
    stream_seq: int = 0
    #: how many entities are ``held`` (a mass disappearance waiting for a second complete listing)
    vanish_held: int = 0


def apply_published(
    state: SourceState, event: EventBase, at_seq: int, *, names: Callable[[str], str]
) -> bool:
    """Make ``state`` reflect one published event; False when it shows an earlier change is missing.

    ``names`` gives the form of an entity name the state keeps (an event may carry it raw: under
    the ``keep`` policy, or before the publisher redacted it).

    Idempotent: a change the state already reflects (an older or equal counter) is ignored. An
    entity's counter moves by one per change, so a counter further ahead is a gap: an event before
    it is not in the stream. The state then stays behind it, and the differ derives the missing
    change again instead of the state skipping it.
    """
    entities = state.entities
    match event:
        case TaskAppeared() | TaskStatusChanged() | JobStatusChanged() | TaskProgress() | TaskVanished():
            if (
                isinstance(event, TaskAppeared)
                and event.initial_inventory
                and INVENTORY_LISTED not in state.cursors
            ):
                # the first sweep's events outran its commit: the next sweep still lists inventory
                state.cursors = {**state.cursors, INVENTORY_LISTING: 1}
            old = entities.get(event.entity_id)
            known = old.seq if old is not None else 0
            if event.seq > known + 1:
                state.stream_seq = max(state.stream_seq, at_seq)
                return False
            if event.seq == known + 1 or (isinstance(event, TaskProgress) and event.seq == known):
                _apply_change(entities, old, event, names)
        case SourceDegraded():
            if event.episode > state.health.episode or not state.health.degraded:
                state.health = Health(
                    episode=event.episode,
                    degraded=True,
                    api=event.api,
                    reason=event.reason.value,
                    since=(event.first_failed_at or event.observed_at).timestamp(),
                )
        case SourceRecovered():
            if event.episode >= state.health.episode:
                state.health = Health(episode=event.episode, degraded=False)
        case _:
            pass  # call-finished changes no entity; cursors stay where they were committed
    state.stream_seq = max(state.stream_seq, at_seq)
    return True


def _apply_change(
    entities: dict[str, EntityState],
    old: EntityState | None,
    event: TaskAppeared | TaskStatusChanged | JobStatusChanged | TaskProgress | TaskVanished,
    names: Callable[[str], str],
) -> None:
    """One entity's next change (or, for progress, the rest of the change its status began)."""
    match event:
        case TaskAppeared():
            entities[event.entity_id] = EntityState(
                kind=event.kind.value,
                state=event.current.state.value,
                raw=event.current.raw,
                seq=event.seq,
                completed=event.completed,
                total=event.total,
                parent=event.parent_id,
                name=None if event.name is None else names(event.name),
            )
        case TaskStatusChanged() | JobStatusChanged() if old is not None:
            entities[event.entity_id] = msgspec.structs.replace(
                old, state=event.current.state.value, raw=event.current.raw, seq=event.seq
            )
        case TaskProgress() if old is not None:
            # status and progress of one change share the counter
            entities[event.entity_id] = msgspec.structs.replace(
                old, completed=event.completed, total=event.total, seq=event.seq
            )
        case TaskVanished() if old is not None:
            # the last raw value stays: a finished job that comes back unchanged is not a new call
            entities[event.entity_id] = EntityState(kind=old.kind, state=VANISHED, raw=old.raw, seq=event.seq)
        case _:
            pass  # a change of an entity this state never had: nothing to base it on
