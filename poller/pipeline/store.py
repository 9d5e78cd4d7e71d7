"""Committed per-source state in a JetStream KV bucket.

A source's entity map can be large (100k jobs), bigger than one KV value may be, so it is split into
chunks by a stable hash of the entity id. Chunks are written first and the small ``meta`` record
(cursors, health, which chunk generation is live) last: a crash between the two leaves the old meta
pointing at the old generation's chunks, or the new meta at complete new chunks. Re-deriving events
from an older committed state gives the same event ids, which JetStream de-duplicates.

Fenced: ``meta`` is only ever written as a compare-and-set on the revision this store loaded or
last wrote, and chunks are only written under a generation named after this store's writer id, so
a second writer of one source (two replicas during a hand-over, two processes on one file) can
neither overwrite the winner's meta nor touch the chunks it points at: the loser gets
:class:`StateFenced` and must stop polling that source.

A write NATS refuses for lack of permission on its key's subject fails at once with
:class:`~poller.pipeline.nats_denials.SubjectDenied` (through ``denials``), not after a timeout.

The bucket is outside the process, so entity names are kept redacted (see
:class:`~poller.pipeline.state.EntityState`); a state written before that was so is redacted when
loaded, and its next commit rewrites every chunk (:meth:`StateStore.names_pending` asks for one).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import sys
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from poller.pipeline.nats_denials import Denials, guarded, kv_subject_prefix
from poller.pipeline.redact import Redactor
from poller.pipeline.state import EntityState, Health, SourceState

__all__ = ["StateFenced", "StateStore", "chunk_of", "chunks_needed", "kv_key_token"]

T = TypeVar("T")
CHUNK_TARGET_BYTES = 256 * 1024
#: entities sorted into chunks between two yields to the event loop during a commit (~5 ms)
COMMIT_SLICE = 10_000
ENTITY_BYTES_ESTIMATE = 96


class StateFenced(Exception):
    """Another writer committed this source's state since we loaded it: it owns the source now."""

    def __init__(self, source_key: str) -> None:
        super().__init__(f"state of {source_key} was committed by another writer")
        self.source_key = source_key


class Meta(msgspec.Struct, kw_only=True):
    generation: int = 0
    #: the writer whose chunks this generation is (empty in states written before fencing)
    writer: str = ""
    #: the highest stream sequence whose event this state already reflects
    stream_seq: int = 0
    chunks: int = 1
    cursors: dict[str, int] = {}
    health: Health = Health()
    vanish_held: int = 0
    #: the entity names are redacted (False: written before they were, and rewritten at load)
    names_kept: bool = False


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


def _shared_values(
    chunk: dict[str, EntityState], names: Callable[[str], str] | None
) -> dict[str, EntityState]:
    """Decoding gives each entity its own copy of values that repeat across all of them (kind,
    state, raw value, parent): one shared string each brings a loaded map down to the size the
    differ builds (about 150 bytes less per entity). ``names`` redacts names stored raw."""
    intern = sys.intern
    for entity_id, e in chunk.items():
        name = e.name if names is None or e.name is None else names(e.name)
        chunk[entity_id] = EntityState(
            kind=intern(e.kind),
            state=intern(e.state),
            raw=intern(e.raw),
            seq=e.seq,
            completed=e.completed,
            total=e.total,
            parent=None if e.parent is None else intern(e.parent),
            name=name,
            held=e.held,
        )
    return chunk


class StateStore:
    """Loads and commits :class:`SourceState` records; one instance per poller process."""

    def __init__(
        self,
        kv: Any,
        writer: str | None = None,
        *,
        denials: Denials | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._kv = kv
        self._denials = denials
        self._prefix = kv_subject_prefix(kv)
        #: unique per store: names the chunk generations this store writes
        self.writer = writer or uuid.uuid4().hex[:12]
        #: what a name stored raw (by an older poller) is redacted to at load
        self._kept = (redactor or Redactor()).kept
        #: sources loaded with names stored raw: their next commit rewrites every chunk
        self._raw_names: set[str] = set()
        self._meta: dict[str, Meta] = {}
        #: revision of each source's meta as loaded or last written by us (0: absent)
        self._revision: dict[str, int] = {}

    async def _entry(self, key: str) -> tuple[bytes | None, int]:
        """The value and revision of ``key`` (None, 0 when absent or deleted)."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None, 0
        value = entry.value
        return (bytes(value) if value else None), int(entry.revision or 0)

    async def _write(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """A write of ``key``, failed at once if NATS says the user may not publish to its subject."""
        return await guarded(self._denials, None if self._prefix is None else self._prefix + key, call)

    async def _get(self, key: str) -> bytes | None:
        return (await self._entry(key))[0]

    async def load(self, source_key: str) -> SourceState:
        raw_meta, revision = await self._entry(f"{source_key}.meta")
        meta = _decode_meta(raw_meta) if raw_meta else Meta()
        entities: dict[str, EntityState] = {}
        names = None if meta.names_kept else self._kept
        if raw_meta:
            for chunk in range(meta.chunks):
                raw = await self._get(_chunk_key(source_key, meta, chunk))
                if raw:
                    entities.update(_shared_values(_decode_chunk(raw), names))
        self._meta[source_key] = meta
        self._revision[source_key] = revision
        state = SourceState(
            entities=entities,
            cursors=dict(meta.cursors),
            health=meta.health,
            stream_seq=meta.stream_seq,
            vanish_held=meta.vanish_held,
        )
        if raw_meta and not meta.names_kept:
            self._raw_names.add(source_key)
        return state

    def names_pending(self, source_key: str) -> bool:
        """Whether the bucket still holds this source's names raw: a commit is due, even unchanged."""
        return source_key in self._raw_names

    async def commit(self, source_key: str, state: SourceState, changed: Iterable[str] | None) -> None:
        """Persist ``state``; ``changed`` names the entities whose chunk must be rewritten (None: all)."""
        old = self._meta.get(source_key) or Meta()
        if source_key in self._raw_names:
            changed = None  # every chunk, so no raw name stays behind
        needed = chunks_needed(len(state.entities))
        # chunks are rewritten in place only in a generation this store wrote itself
        relayout = needed > old.chunks or changed is None or old.writer != self.writer
        meta = Meta(
            generation=old.generation + 1 if relayout else old.generation,
            writer=self.writer,
            chunks=max(needed, old.chunks) if not relayout else needed,
            cursors=dict(state.cursors),
            health=state.health,
            stream_seq=state.stream_seq,
            vanish_held=state.vanish_held,
            names_kept=True,
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
                key, value = _chunk_key(source_key, meta, chunk), _encode(content)
                await self._write(key, partial(self._kv.put, key, value))
        if (
            dirty
            or relayout
            or (meta.cursors, meta.health, meta.stream_seq, meta.vanish_held)
            != (old.cursors, old.health, old.stream_seq, old.vanish_held)
        ):
            self._revision[source_key] = await self._write_meta(source_key, _encode(meta))
        if relayout and source_key in self._meta:
            for chunk in range(old.chunks):
                # a stale chunk of an old generation is harmless garbage if its purge fails
                with contextlib.suppress(Exception):
                    key = _chunk_key(source_key, old, chunk)
                    await self._write(key, partial(self._kv.purge, key))
        self._meta[source_key] = meta
        self._raw_names.discard(source_key)

    async def _write_meta(self, source_key: str, value: bytes) -> int:
        """Compare-and-set on the revision we know; our own earlier write (an ack lost in an outage,
        then retried) is recognised by its content, anything else fences us out."""
        key = f"{source_key}.meta"
        known = self._revision.get(source_key, 0)
        try:
            if known:
                return int(await self._write(key, partial(self._kv.update, key, value, last=known)))
            return int(await self._write(key, partial(self._kv.create, key, value)))
        except KeyWrongLastSequenceError:
            current, revision = await self._entry(key)
            if current == value:
                return revision
            raise StateFenced(source_key) from None


def _chunk_key(source_key: str, meta: Meta, chunk: int) -> str:
    generation = f"{meta.generation}-{meta.writer}" if meta.writer else str(meta.generation)
    return f"{source_key}.g{generation}.{chunk}"
