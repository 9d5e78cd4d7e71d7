"""Committed per-source state in a JetStream KV bucket.

A source's entity map can be large (100k jobs), bigger than one KV value may be, so it is split into
chunks by a stable hash of the entity id. Chunks are written first and the small ``meta`` record
(cursors, health, which chunk generation is live) last: a crash between the two leaves the old meta
pointing at the old generation's chunks, or the new meta at complete new chunks. Re-deriving events
from an older committed state gives the same event ids, which JetStream de-duplicates.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import sys
import zlib
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
from nats.js.errors import KeyNotFoundError

from poller.pipeline.state import EntityState, Health, SourceState

__all__ = ["StateStore", "chunk_of", "chunks_needed", "kv_key_token"]

CHUNK_TARGET_BYTES = 256 * 1024
#: entities sorted into chunks between two yields to the event loop during a commit (~5 ms)
COMMIT_SLICE = 10_000
ENTITY_BYTES_ESTIMATE = 96


class Meta(msgspec.Struct, kw_only=True):
    generation: int = 0
    #: the highest stream sequence whose event this state already reflects
    stream_seq: int = 0
    chunks: int = 1
    cursors: dict[str, int] = {}
    health: Health = Health()
    vanish_held: int = 0


_KEY_TOKEN = re.compile(r"[^-_a-zA-Z0-9]")


def kv_key_token(text: str) -> str:
    """A KV-safe token for ``text``; a hash suffix keeps two different unsafe names apart."""
    safe = _KEY_TOKEN.sub("_", text)
    if safe == text and text:
        return text
    return f"{safe}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def chunk_of(entity_id: str, chunks: int) -> int:
    return zlib.crc32(entity_id.encode()) % chunks


def chunks_needed(entity_count: int) -> int:
    n = 1
    while n * CHUNK_TARGET_BYTES < entity_count * ENTITY_BYTES_ESTIMATE:
        n *= 2
    return n


_encode = msgspec.msgpack.Encoder().encode
_decode_chunk = msgspec.msgpack.Decoder(dict[str, EntityState]).decode
_decode_meta = msgspec.msgpack.Decoder(Meta).decode


def _shared_values(chunk: dict[str, EntityState]) -> dict[str, EntityState]:
    """Decoding gives each entity its own copy of values that repeat across all of them (kind,
    state, raw value, parent): one shared string each brings a loaded map down to the size the
    differ builds (about 150 bytes less per entity)."""
    intern = sys.intern
    for entity_id, e in chunk.items():
        chunk[entity_id] = EntityState(
            kind=intern(e.kind),
            state=intern(e.state),
            raw=intern(e.raw),
            seq=e.seq,
            completed=e.completed,
            total=e.total,
            parent=None if e.parent is None else intern(e.parent),
            name=e.name,
            held=e.held,
        )
    return chunk


class StateStore:
    """Loads and commits :class:`SourceState` records; one instance per poller process."""

    def __init__(self, kv: Any) -> None:
        self._kv = kv
        self._meta: dict[str, Meta] = {}

    async def _get(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        value = entry.value
        return bytes(value) if value is not None else None

    async def load(self, source_key: str) -> SourceState:
        raw_meta = await self._get(f"{source_key}.meta")
        meta = _decode_meta(raw_meta) if raw_meta else Meta()
        entities: dict[str, EntityState] = {}
        if raw_meta:
            for chunk in range(meta.chunks):
                raw = await self._get(f"{source_key}.g{meta.generation}.{chunk}")
                if raw:
                    entities.update(_shared_values(_decode_chunk(raw)))
        self._meta[source_key] = meta
        return SourceState(
            entities=entities,
            cursors=dict(meta.cursors),
            health=meta.health,
            stream_seq=meta.stream_seq,
            vanish_held=meta.vanish_held,
        )

    async def commit(self, source_key: str, state: SourceState, changed: Iterable[str] | None) -> None:
        """Persist ``state``; ``changed`` names the entities whose chunk must be rewritten (None: all)."""
        old = self._meta.get(source_key) or Meta()
        needed = chunks_needed(len(state.entities))
        relayout = needed > old.chunks or changed is None or source_key not in self._meta
        meta = Meta(
            generation=old.generation + 1 if relayout else old.generation,
            chunks=max(needed, old.chunks) if not relayout else needed,
            cursors=dict(state.cursors),
            health=state.health,
            stream_seq=state.stream_seq,
            vanish_held=state.vanish_held,
        )
        if relayout:
            dirty = set(range(meta.chunks))
        else:
            assert changed is not None
            dirty = {chunk_of(entity_id, meta.chunks) for entity_id in changed}
        if dirty:
            buckets: dict[int, dict[str, EntityState]] = {c: {} for c in dirty}
            # hashing every id takes ~50 ms at 100k entities: done in slices, so the event loop (and
            # the sweep paced on it) is never held for long; the map is not changed meanwhile
            items = iter(state.entities.items())
            while batch := list(itertools.islice(items, COMMIT_SLICE)):
                for entity_id, entity in batch:
                    chunk = chunk_of(entity_id, meta.chunks)
                    if chunk in buckets:
                        buckets[chunk][entity_id] = entity
                await anyio.lowlevel.checkpoint()
            for chunk, content in buckets.items():
                await self._kv.put(f"{source_key}.g{meta.generation}.{chunk}", _encode(content))
        if (
            dirty
            or relayout
            or (meta.cursors, meta.health, meta.stream_seq, meta.vanish_held)
            != (old.cursors, old.health, old.stream_seq, old.vanish_held)
        ):
            await self._kv.put(f"{source_key}.meta", _encode(meta))
        if relayout and source_key in self._meta:
            for chunk in range(old.chunks):
                # a stale chunk of an old generation is harmless garbage if its purge fails
                with contextlib.suppress(Exception):
                    await self._kv.purge(f"{source_key}.g{old.generation}.{chunk}")
        self._meta[source_key] = meta
