"""Catch the loaded state up with what was already published: the stream is our write-ahead log.

State is committed after its events are acked, so a poller killed in between restarts from a
state that is behind the stream. Re-deriving from it would repeat the published changes, or, if
the vendor moved on meanwhile, report A→C after A→B was already out. Instead, the events of this
source published after the committed ``stream_seq`` are applied to the loaded state first.

An entity's change counter moves by one per change: an event further ahead than the next one
means an earlier event of that entity is not in the stream (it failed, and the poller died before
its resend). Replay never skips over such a gap: the entity stays at the last change it saw, the
differ derives the missing change again, and the gap is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from poller.pipeline.state import SourceState, apply_published
from poller.pipeline.subjects import SOURCE_HEADER
from schemas import Event

__all__ = ["replay"]

log = logging.getLogger("poller.replay")
_decode = msgspec.json.Decoder(Event).decode


async def replay(
    js: Any,
    stream: str,
    subject_filter: str,
    source_key: str,
    state: SourceState,
    *,
    names: Callable[[str], str],
) -> int:
    """Apply this source's events published after ``state.stream_seq``; returns how many.

    ``names`` redacts the entity names kept in state (under ``keep`` the stream carries them raw).
    """
    applied = 0
    gaps: set[str] = set()
    seq = state.stream_seq + 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject_filter, next=True)
        except NotFoundError:
            break
        headers = msg.headers or {}
        if headers.get(SOURCE_HEADER) == source_key and msg.data:
            try:
                event = _decode(msg.data)
                if apply_published(state, event, msg.seq, names=names):
                    applied += 1
                else:
                    gaps.add(getattr(event, "entity_id", ""))
            except msgspec.DecodeError:
                log.warning("unreadable event in the stream skipped during replay", extra={"seq": msg.seq})
        seq = msg.seq + 1
    if gaps:
        log.warning(
            "events missing before later ones of the same entity; their changes are derived again",
            extra={"source": source_key, "entities": len(gaps)},
        )
    if applied:
        log.info("replayed published events into state", extra={"source": source_key, "events": applied})
    return applied
