"""What the differ remembers of a source, and how one published event changes it.

The one home of the entity record, the ``vanished`` tombstone and :func:`apply_published`: the
differ derives events from this state and replay applies stored events to it, so both must agree.
"""

from __future__ import annotations

import msgspec

from schemas import (
    Event,
    JobStatusChanged,
    SourceDegraded,
    SourceRecovered,
    TaskAppeared,
    TaskProgress,
    TaskStatusChanged,
    TaskVanished,
)

__all__ = ["VANISHED", "EntityState", "Health", "SourceState", "apply_published"]

#: the state of an entity a complete listing no longer shows (its counter and last raw value are kept)
VANISHED = "vanished"


class EntityState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the differ remembers of one entity. Kept tiny: there can be millions."""

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


def apply_published(state: SourceState, event: Event, at_seq: int) -> None:
    """Make ``state`` reflect one published event (idempotent: older counters are ignored)."""
    entities = state.entities
    match event:
        case TaskAppeared():
            old = entities.get(event.entity_id)
            if old is None or old.seq < event.seq:
                entities[event.entity_id] = EntityState(
                    kind=event.kind.value,
                    state=event.current.state.value,
                    raw=event.current.raw,
                    seq=event.seq,
                    completed=event.completed,
                    total=event.total,
                    parent=event.parent_id,
                    name=event.name,
                )
        case TaskStatusChanged() | JobStatusChanged():
            old = entities.get(event.entity_id)
            if old is not None and old.seq < event.seq:
                entities[event.entity_id] = msgspec.structs.replace(
                    old, state=event.current.state.value, raw=event.current.raw, seq=event.seq
                )
        case TaskProgress():
            old = entities.get(event.entity_id)
            if old is not None and old.seq < event.seq:
                entities[event.entity_id] = msgspec.structs.replace(
                    old, completed=event.completed, total=event.total, seq=event.seq
                )
            elif old is not None and old.seq == event.seq:
                # status and progress of one change share the counter
                entities[event.entity_id] = msgspec.structs.replace(
                    old, completed=event.completed, total=event.total
                )
        case TaskVanished():
            old = entities.get(event.entity_id)
            if old is not None and old.seq < event.seq:
                entities[event.entity_id] = EntityState(
                    kind=old.kind, state=VANISHED, raw=old.raw, seq=event.seq
                )
        case SourceDegraded():
            if event.episode > state.health.episode or not state.health.degraded:
                state.health = Health(
                    episode=event.episode,
                    degraded=True,
                    api=event.api,
                    reason=event.reason.value,
                    since=(event.since or event.observed_at).timestamp(),
                )
        case SourceRecovered():
            if event.episode >= state.health.episode:
                state.health = Health(episode=event.episode, degraded=False)
        case _:
            pass  # call-finished changes no entity; cursors stay where they were committed
    state.stream_seq = max(state.stream_seq, at_seq)
