"""Catch the loaded state up with what was already published: the stream is our write-ahead log.

State is committed after its events are acked, so a poller killed in between restarts from a
state that is behind the stream. Re-deriving from it would repeat the published changes, or, if
the vendor moved on meanwhile, report A→C after A→B was already out. Instead, the events of this
source published after the committed ``stream_seq`` are applied to the loaded state first.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from poller.publisher import SOURCE_HEADER
from poller.state import EntityState, Health, SourceState
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

log = logging.getLogger("poller.replay")
_decode = msgspec.json.Decoder(Event).decode


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
                    kind=old.kind, state="vanished", raw="", seq=event.seq
                )
        case SourceDegraded():
            if event.episode > state.health.episode or not state.health.degraded:
                state.health = Health(
                    episode=event.episode,
                    degraded=True,
                    api=event.api,
                    reason=event.reason.value,
                    since=event.observed_at.timestamp(),
                )
        case SourceRecovered():
            if event.episode >= state.health.episode:
                state.health = Health(episode=event.episode, degraded=False)
        case _:
            pass  # call-finished changes no entity; cursors stay where they were committed
    state.stream_seq = max(state.stream_seq, at_seq)


async def replay(js: Any, stream: str, subject_filter: str, source_key: str, state: SourceState) -> int:
    """Apply this source's events published after ``state.stream_seq``; returns how many."""
    applied = 0
    seq = state.stream_seq + 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject_filter, next=True)
        except NotFoundError:
            break
        headers = msg.headers or {}
        if headers.get(SOURCE_HEADER) == source_key and msg.data:
            try:
                apply_published(state, _decode(msg.data), msg.seq)
                applied += 1
            except msgspec.DecodeError:
                log.warning("unreadable event in the stream skipped during replay", extra={"seq": msg.seq})
        seq = msg.seq + 1
    if applied:
        log.info("replayed published events into state", extra={"source": source_key, "events": applied})
    return applied
