"""Bytes per tracked entity (built by the differ, loaded from KV, the baseline's dicts)."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats

from poller.pipeline.differ import diff
from poller.pipeline.snapshot import Observation
from poller.pipeline.state import EntityState, SourceState
from poller.pipeline.store import StateStore, chunk_of, chunks_needed
from poller.tools.bench.child import child_line, run_child
from poller.tools.bench.pages import decode_tencent, tencent_page
from poller.tools.bench.progress import Progress
from poller.tools.bench.results import ChildMemory, MemoryResult
from poller.tools.bench.sizes import APP, FIRST_TASK_ID, MEMORY_BUCKET, MEMORY_KEY, PRIVACY, SOURCE, Sizes
from poller.tools.natsserver import NatsServer
from poller.vendors.tencent_ccc import normalize

__all__ = ["bench_memory", "child_memory_baseline", "child_memory_build", "child_memory_load", "rss_bytes"]


# -- memory (each measurement in a fresh subprocess) ---------------------------------------------------
def rss_bytes() -> int:
    """Resident set size now (Linux /proc; elsewhere the peak, which is an upper bound)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def _child_progress(kind: str, done: int, total: int) -> None:
    child_line(f"{kind}: {done:,}/{total:,} entities")


def _build_entity_map(n: int, page_size: int, kind: str) -> dict[str, EntityState]:
    """Our entity map built the way the first sweeps build it: page → decode → normalize → diff."""
    entities: dict[str, EntityState] = {}
    empty = SourceState()
    parent = str(APP)  # as the adapter passes it: one string per source
    step = max(page_size, (n // 5) // page_size * page_size)
    for start in range(0, n, page_size):
        body = tencent_page(FIRST_TASK_ID + start, [1] * min(page_size, n - start), n)
        result = decode_tencent.decode(body).Response
        assert result.Tasks is not None
        observation = Observation(entities=[normalize(t, parent) for t in result.Tasks], complete=False)
        entities.update(diff(SOURCE, empty, observation, datetime.now(UTC), PRIVACY).state.entities)
        if (start + page_size) % step == 0:
            _child_progress(kind, start + page_size, n)
    # the next sweep's diff copies the map (``dict(previous.entities)``): that copy is what stays
    return dict(entities)


def _chunk_sizes(entities: dict[str, EntityState]) -> list[int]:
    """The KV chunk layout StateStore.commit writes for a full relayout, encoded the same way."""
    chunks = chunks_needed(len(entities))
    buckets: list[dict[str, EntityState]] = [{} for _ in range(chunks)]
    for entity_id, entity in entities.items():
        buckets[chunk_of(entity_id, chunks)][entity_id] = entity
    return [len(msgspec.msgpack.encode(bucket)) for bucket in buckets]


async def child_memory_build(n: int, page_size: int, nats_url: str | None) -> ChildMemory:
    gc.collect()
    before = rss_bytes()
    entities = _build_entity_map(n, page_size, "memory (ours, built by the differ)")
    gc.collect()
    after = rss_bytes()
    sizes = _chunk_sizes(entities)
    commit_seconds = 0.0
    if nats_url:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream(timeout=30)
            kv = await js.create_key_value(bucket=MEMORY_BUCKET, history=1)
            started = time.perf_counter()
            await StateStore(kv).commit(MEMORY_KEY, SourceState(entities=entities), None)
            commit_seconds = time.perf_counter() - started
        finally:
            await nc.close()
    return ChildMemory(
        kind="built",
        entities=len(entities),
        rss_before=before,
        rss_after=after,
        bytes_per_entity=(after - before) / max(1, len(entities)),
        encoded_bytes=sum(sizes),
        chunks=len(sizes),
        largest_chunk=max(sizes),
        commit_seconds=round(commit_seconds, 3),
    )


async def child_memory_load(nats_url: str) -> ChildMemory:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(timeout=30)
        store = StateStore(await js.key_value(MEMORY_BUCKET))
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        state = await store.load(MEMORY_KEY)
        load_seconds = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
    finally:
        await nc.close()
    n = len(state.entities)
    return ChildMemory(
        kind="loaded",
        entities=n,
        rss_before=before,
        rss_after=after,
        bytes_per_entity=(after - before) / max(1, n),
        load_seconds=round(load_seconds, 3),
    )


def child_memory_baseline(n: int, page_size: int) -> ChildMemory:
    gc.collect()
    before = rss_bytes()
    known: dict[int, dict[str, Any]] = {}
    step = max(page_size, (n // 5) // page_size * page_size)
    for start in range(0, n, page_size):
        body = tencent_page(FIRST_TASK_ID + start, [1] * min(page_size, n - start), n)
        for task in json.loads(body)["Response"]["Tasks"]:
            known[task["TaskId"]] = task
        if (start + page_size) % step == 0:
            _child_progress("memory (baseline dict of dicts)", start + page_size, n)
    gc.collect()
    after = rss_bytes()
    return ChildMemory(
        kind="baseline",
        entities=len(known),
        rss_before=before,
        rss_after=after,
        bytes_per_entity=(after - before) / max(1, len(known)),
        encoded_bytes=len(json.dumps(known).encode()),
    )


async def bench_memory(sizes: Sizes, progress: Progress) -> MemoryResult:
    n, page_size = sizes.memory_entities, 100
    progress(f"memory: {n:,} tracked entities, each measurement in a fresh subprocess")
    with NatsServer() as server:
        built = await run_child(["memory-build", str(n), str(page_size), server.url], ChildMemory)
        progress(
            f"memory: built by the differ {built.bytes_per_entity:.0f} B/entity; "
            f"committed to KV in {built.commit_seconds:.1f} s ({built.chunks} chunks)"
        )
        loaded = await run_child(["memory-load", str(n), str(page_size), server.url], ChildMemory)
        progress(
            f"memory: loaded from KV {loaded.bytes_per_entity:.0f} B/entity in {loaded.load_seconds:.1f} s"
        )
    baseline = await run_child(["memory-baseline", str(n), str(page_size), ""], ChildMemory)
    progress(f"memory: baseline {baseline.bytes_per_entity:.0f} B/entity")
    return MemoryResult(entities=n, built=built, loaded=loaded, baseline=baseline)
