"""``poller bench``: the product's performance bars, measured beside a plain baseline in one run.

Starts its own nats-server and vendor simulators, runs the real :class:`poller.runtime.service.Service`
against them, and prints one table (ours, baseline, ours ÷ baseline, target) plus a JSON file.
Rate-limit use and throttling come from the simulator's own request log, detection latency from
a NATS subscriber timing each event against the moment the change was made in the simulator.
``--quick`` runs the same parts at small sizes in seconds (what the tests run). The analysis of the
figures, including how the latency floor is derived, is in docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import itertools
import json
import math
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec
import nats
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from nats.js.api import StorageType, StreamConfig

from poller.config import Config, NatsConfig, parse_config
from poller.pipeline.differ import Diff, SweepDiff, diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.publisher import Publisher
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import EntityState, SourceState
from poller.pipeline.store import StateStore, chunk_of, chunks_needed
from poller.runtime.service import Service
from poller.simulators.base import RequestLog, RequestRecord, Simulator, max_in_window
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.baseline import (
    PlainOutboundBotPoller,
    PlainPoller,
    PlainTencentPoller,
    plain_decode_and_compare,
    plain_publish,
)
from poller.tools.bench.push import PushResult, bench_push
from poller.tools.natsserver import NatsServer
from poller.transport import Response
from poller.vendors.tencent_ccc import APIS, LIST_API, classify, normalize
from schemas import EntityKind, Event, JobStatusChanged, TaskAppeared, TaskState, TaskStatusChanged
from schemas.vendors.tencent_ccc import AutoCalloutTaskInfo, DescribeAutoCalloutTasksResponse

SECRET_ID = "AKIDbenchmark"
SECRET_KEY = "benchmark-secret-key"
APP = 1400000001
FIRST_TASK_ID = 1001
ACCOUNT = "bench"
OURS_PREFIX = "aicc"
PLAIN_PREFIX = "baseline"
MEMORY_BUCKET = "bench_memory"
MEMORY_KEY = "tencent-ccc.bench.memory"
SOURCE = SourceId(vendor="tencent-ccc", account=ACCOUNT, scope=str(APP))
PRIVACY = Privacy()
#: put on the subprocesses' PYTHONPATH so ``-m poller.tools.bench`` finds this very tree
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
T = TypeVar("T")

# the product's performance bars (README, Performance)
LIMIT_USE_TARGET = 0.97
LATENCY_FACTOR = 1.2
DECODE_DIFF_TARGET = 200_000.0
PUBLISH_TARGET = 20_000.0
BYTES_PER_ENTITY_TARGET = 300.0


class Sizes(msgspec.Struct, frozen=True, kw_only=True):
    tencent_tasks: int
    tencent_page_size: int
    outboundbot_jobs: int
    outboundbot_page_size: int
    #: how long changes are made in each latency run (after the first sweep)
    change_seconds: float
    changes_per_second: float
    cpu_entities: int
    cpu_repeats: int
    publish_events: int
    baseline_publish_events: int
    memory_entities: int
    progress_every: float
    #: the push row: calls placed (half their pushes dropped) and at what rate
    push_calls: int = 600
    push_per_second: float = 20.0
    push_poll_interval: float = 2.0


FULL = Sizes(
    tencent_tasks=10_000,
    tencent_page_size=100,
    outboundbot_jobs=100_000,
    outboundbot_page_size=100,
    change_seconds=90.0,
    changes_per_second=5.0,
    cpu_entities=100_000,
    cpu_repeats=5,
    publish_events=50_000,
    baseline_publish_events=20_000,
    memory_entities=1_000_000,
    progress_every=3.0,
)
QUICK = Sizes(
    tencent_tasks=400,
    tencent_page_size=50,
    outboundbot_jobs=2_000,
    outboundbot_page_size=100,
    change_seconds=2.0,
    changes_per_second=10.0,
    cpu_entities=5_000,
    cpu_repeats=3,
    publish_events=3_000,
    baseline_publish_events=1_000,
    memory_entities=20_000,
    progress_every=1.0,
    push_calls=40,
    push_per_second=40.0,
    push_poll_interval=1.0,
)


# -- results (the JSON file) -------------------------------------------------------------------------
class Figure(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the table: our figure, the baseline's, their ratio and the target."""

    key: str
    group: str
    label: str
    unit: str
    ours: float | None
    baseline: float | None
    ratio: float | None
    target: str
    meets: bool | None
    note: str = ""


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """One latency run (ours or the baseline) against a fresh simulator and nats-server."""

    who: str
    window_seconds: float
    requests_in_window: int
    per_second: float
    limit_use: float
    throttled: int
    max_in_window: int
    changes: int
    samples: int
    missed: int
    p50: float | None
    p99: float | None
    mean: float | None
    max: float | None
    sweep_seconds: float | None
    #: poller start → every entity's first event received (the initial sync)
    first_sweep_seconds: float


class LatencyRow(msgspec.Struct, frozen=True, kw_only=True):
    vendor: str
    api: str
    label: str
    entities: int
    page_size: int
    pages: int
    limit: int
    #: pages ÷ rate: the time one full sweep takes at the limit (the latency floor)
    floor_seconds: float
    bar_seconds: float
    #: the best any poller can do at this rate: a change waits U(0, floor) for its page's next read
    ideal_p50: float
    ideal_p99: float
    measured: bool
    note: str = ""
    ours: RunResult | None = None
    baseline: RunResult | None = None


class Throughput(msgspec.Struct, frozen=True, kw_only=True):
    items: int
    #: per repeat: items per CPU-second of this thread (decode+diff) or per wall second (publish)
    rates: list[float]
    per_second: float


class DecodeDiffResult(msgspec.Struct, frozen=True, kw_only=True):
    entities: int
    page_size: int
    changed_fraction: float
    ours_steady: Throughput
    baseline_steady: Throughput
    ours_first_sweep: Throughput
    baseline_first_sweep: Throughput


class PublishResult(msgspec.Struct, frozen=True, kw_only=True):
    ours: Throughput
    baseline: Throughput
    event_bytes: float


class ChildMemory(msgspec.Struct, frozen=True, kw_only=True):
    """What one memory subprocess reports."""

    kind: str
    entities: int
    rss_before: int
    rss_after: int
    bytes_per_entity: float
    encoded_bytes: int = 0
    chunks: int = 0
    largest_chunk: int = 0
    commit_seconds: float = 0.0
    load_seconds: float = 0.0


class MemoryResult(msgspec.Struct, frozen=True, kw_only=True):
    entities: int
    built: ChildMemory
    loaded: ChildMemory
    baseline: ChildMemory


class Machine(msgspec.Struct, frozen=True, kw_only=True):
    cpus: int
    python: str
    platform: str
    load_before: list[float]
    load_after: list[float]


class Results(msgspec.Struct, frozen=True, kw_only=True):
    command: str
    quick: bool
    started_at: str
    seconds: float
    machine: Machine
    figures: list[Figure]
    latency: list[LatencyRow]
    decode_diff: DecodeDiffResult | None
    publish: PublishResult | None
    memory: MemoryResult | None
    push: PushResult | None = None


@dataclass
class Outcome:
    """The results plus what is kept out of the JSON: each run's request arrival times."""

    results: Results
    #: run label → (limit, arrival times of every request the simulator saw)
    arrivals: dict[str, tuple[int, list[float]]] = field(default_factory=dict)


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """Timestamped lines on stderr, so a person watching sees the run move."""

    def __init__(self, out: Any = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", file=self.out, flush=True)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- Tencent wire pages (shared by the CPU and memory parts) ---------------------------------------
_decode_tencent = msgspec.json.Decoder(DescribeAutoCalloutTasksResponse)


def tencent_page(first: int, states: Sequence[int], total: int) -> bytes:
    """One DescribeAutoCalloutTasks answer, encoded the way the simulator encodes it."""
    tasks = [
        AutoCalloutTaskInfo(
            TaskId=first + i,
            State=state,
            Name=f"task-{first + i}",
            CalleeCount=10,
            Callers=["0755" + str(first + i)],
            NotBefore=1_700_000_000,
            NotAfter=None,
            IvrId=1,
        )
        for i, state in enumerate(states)
    ]
    return msgspec.json.encode(
        {"Response": {"TotalCount": total, "Tasks": tasks, "RequestId": str(uuid.uuid4())}}
    )


def tencent_pages(states: Sequence[int], page_size: int) -> Iterator[bytes]:
    total = len(states)
    for start in range(0, total, page_size):
        yield tencent_page(FIRST_TASK_ID + start, states[start : start + page_size], total)


def our_sweep(bodies: Sequence[bytes], committed: SourceState) -> Diff:
    """What one Tencent poll cycle does with its pages: classify, decode, normalize, diff.

    Mirrors ``TencentCccSource.observe`` with the service's page sink after the HTTP exchanges:
    each page is decoded once (classification hands it back), normalized, kept in the listing and
    diffed at once; the end of the sweep diffs nothing twice and looks for vanished tasks.
    """
    sweep = SweepDiff(SOURCE, committed, PRIVACY)
    by_id: dict[str, EntitySnapshot] = {}
    totals: set[int | None] = set()
    parent = str(APP)
    now = datetime.now(UTC)
    for body in bodies:
        result = classify(Response(200, {"Content-Type": "application/json"}, body)).Response
        assert result.Tasks is not None
        totals.add(result.TotalCount)
        page = [normalize(task, parent) for task in result.Tasks]
        for snap in page:
            by_id[snap.id] = snap
        sweep.apply(page, now)
    complete = len(totals) == 1 and len(by_id) == next(iter(totals))
    return sweep.finish(Observation(entities=list(by_id.values()), complete=complete), now)


# -- decode + diff (each side in a fresh subprocess) ----------------------------------------------------
class CpuChild(msgspec.Struct, frozen=True, kw_only=True):
    """What one decode+diff subprocess reports: entities per CPU-second, per repeat."""

    steady: list[float]
    first_sweep: list[float]


def _cpu_rate(items: int, run: Callable[[], object]) -> float:
    """Items per CPU-second of this thread: other processes on the machine do not count against us."""
    started = time.thread_time()
    run()
    return items / max(1e-9, time.thread_time() - started)


CHANGED_FRACTION = 0.01


def cpu_pages(n: int, page_size: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """A first sweep's pages and the next sweep's, with ``CHANGED_FRACTION`` of the tasks changed."""
    rng = random.Random(seed)
    states = [rng.choice((0, 1, 2, 5)) for _ in range(n)]
    first = list(tencent_pages(states, page_size))
    for i in rng.sample(range(n), max(1, int(n * CHANGED_FRACTION))):
        states[i] = 5 if states[i] == 1 else 1
    return first, list(tencent_pages(states, page_size))


def _plain_sweep(bodies: Sequence[bytes], known: dict[int, dict[str, Any]]) -> None:
    for body in bodies:
        plain_decode_and_compare(known, body, "tencent-ccc", ACCOUNT)


def _child_cpu(who: str, n: int, page_size: int, repeats: int, seed: int) -> CpuChild:
    """Run in a fresh process, so neither side pays for the other's objects in the GC's heap."""
    first, second = cpu_pages(n, page_size, seed)
    steady: list[float] = []
    cold: list[float] = []
    committed = our_sweep(first, SourceState()).state if who == "ours" else SourceState()
    plain_known: dict[int, dict[str, Any]] = {}
    if who != "ours":
        _plain_sweep(first, plain_known)
    for repeat in range(repeats):
        if who == "ours":
            steady.append(_cpu_rate(n, functools.partial(our_sweep, second, committed)))
            cold.append(_cpu_rate(n, functools.partial(our_sweep, first, SourceState())))
        else:
            # the baseline updates its map in place: each repeat starts from a copy of the committed one
            steady.append(_cpu_rate(n, functools.partial(_plain_sweep, second, dict(plain_known))))
            cold.append(_cpu_rate(n, functools.partial(_plain_sweep, first, {})))
        _child_line(f"decode+diff ({who}) repeat {repeat + 1}/{repeats}: {steady[-1]:,.0f} entities/s")
    return CpuChild(steady=steady, first_sweep=cold)


async def bench_decode_diff(sizes: Sizes, seed: int, progress: Progress) -> DecodeDiffResult:
    n, page_size = sizes.cpu_entities, sizes.tencent_page_size
    progress(
        f"decode+diff: {n:,} Tencent tasks in {-(-n // page_size)} pages, {CHANGED_FRACTION:.0%} changed "
        "per sweep; ours and the baseline each in a fresh subprocess"
    )
    args = [str(n), str(page_size), str(sizes.cpu_repeats), str(seed)]
    ours = await _run_child(["cpu-ours", *args], CpuChild)
    plain = await _run_child(["cpu-baseline", *args], CpuChild)

    def throughput(rates: list[float]) -> Throughput:
        return Throughput(items=n, rates=[round(r) for r in rates], per_second=statistics.median(rates))

    result = DecodeDiffResult(
        entities=n,
        page_size=page_size,
        changed_fraction=CHANGED_FRACTION,
        ours_steady=throughput(ours.steady),
        baseline_steady=throughput(plain.steady),
        ours_first_sweep=throughput(ours.first_sweep),
        baseline_first_sweep=throughput(plain.first_sweep),
    )
    progress(
        f"decode+diff: ours {result.ours_steady.per_second:,.0f}/s, "
        f"baseline {result.baseline_steady.per_second:,.0f}/s (median of {sizes.cpu_repeats})"
    )
    return result


# -- publish -------------------------------------------------------------------------------------
def stream_config(name: str, prefix: str) -> StreamConfig:
    """The stream the Service creates, for another name and subject prefix."""
    defaults = NatsConfig()
    return StreamConfig(
        name=name,
        subjects=[f"{prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=defaults.duplicate_window,
        max_age=defaults.max_age_days * 86400,
        num_replicas=1,
    )


def status_events(n: int) -> list[TaskStatusChanged]:
    """``n`` status changes exactly as the differ derives them (running → paused)."""

    def snapshots(state: TaskState, raw: str) -> list[EntitySnapshot]:
        return [
            EntitySnapshot(
                kind=EntityKind.TASK,
                id=str(FIRST_TASK_ID + i),
                state=state,
                raw_state=raw,
                parent_id=str(APP),
                name=f"task-{FIRST_TASK_ID + i}",
                total=10,
            )
            for i in range(n)
        ]

    now = datetime.now(UTC)
    first = diff(
        SOURCE,
        SourceState(),
        Observation(entities=snapshots(TaskState.RUNNING, "1"), complete=True),
        now,
        PRIVACY,
    )
    second = diff(
        SOURCE,
        first.state,
        Observation(entities=snapshots(TaskState.PAUSED, "5"), complete=True),
        now,
        PRIVACY,
    )
    events = [e for e in second.events if isinstance(e, TaskStatusChanged)]
    assert len(events) == n
    return events


async def bench_publish(sizes: Sizes, progress: Progress) -> PublishResult:
    events = status_events(sizes.publish_events)
    plain = [msgspec.to_builtins(e) for e in events[: sizes.baseline_publish_events]]
    event_bytes = statistics.fmean(len(msgspec.json.encode(e)) for e in events[:1000])
    with NatsServer() as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream(timeout=10)
            await js.add_stream(stream_config("BENCH", OURS_PREFIX))
            await js.add_stream(stream_config("BASELINE", PLAIN_PREFIX))
            progress(f"publish: {len(events):,} events through our Publisher into a local JetStream")
            publisher = Publisher(js, subject_prefix=OURS_PREFIX, ack_timeout=10.0)
            started = time.perf_counter()
            await publisher.publish(events, "bench")
            ours = len(events) / (time.perf_counter() - started)
            if publisher.stats.published != len(events):
                raise RuntimeError(f"publisher stored {publisher.stats.published} of {len(events)} events")
            progress(f"publish: ours {ours:,.0f} events/s; baseline: {len(plain):,} awaited publishes")
            started = time.perf_counter()
            await plain_publish(js, PLAIN_PREFIX, plain)
            baseline = len(plain) / (time.perf_counter() - started)
            progress(f"publish: baseline {baseline:,.0f} events/s")
        finally:
            await nc.close()
    return PublishResult(
        ours=Throughput(items=len(events), rates=[round(ours)], per_second=ours),
        baseline=Throughput(items=len(plain), rates=[round(baseline)], per_second=baseline),
        event_bytes=round(event_bytes, 1),
    )


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
    _child_line(f"{kind}: {done:,}/{total:,} entities")


def _build_entity_map(n: int, page_size: int, kind: str) -> dict[str, EntityState]:
    """Our entity map built the way the first sweeps build it: page → decode → normalize → diff."""
    entities: dict[str, EntityState] = {}
    empty = SourceState()
    parent = str(APP)  # as the adapter passes it: one string per source
    step = max(page_size, (n // 5) // page_size * page_size)
    for start in range(0, n, page_size):
        body = tencent_page(FIRST_TASK_ID + start, [1] * min(page_size, n - start), n)
        result = _decode_tencent.decode(body).Response
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


async def _child_memory_build(n: int, page_size: int, nats_url: str | None) -> ChildMemory:
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


async def _child_memory_load(nats_url: str) -> ChildMemory:
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


def _child_memory_baseline(n: int, page_size: int) -> ChildMemory:
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


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def _child_command(args: Sequence[str]) -> list[str]:
    # -P: the working directory must not shadow the tree this bench runs from (PACKAGE_ROOT)
    return [sys.executable, "-P", "-m", "poller.tools.bench", "--child", *args]


def _child_line(message: str) -> None:
    """A subprocess's progress goes to stderr (inherited): stdout carries its result."""
    print(f"           {message}", file=sys.stderr, flush=True)


async def _run_child(args: list[str], kind: type[T]) -> T:
    done = await anyio.run_process(_child_command(args), stderr=None, env=_child_env())
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=kind)


async def bench_memory(sizes: Sizes, progress: Progress) -> MemoryResult:
    n, page_size = sizes.memory_entities, 100
    progress(f"memory: {n:,} tracked entities, each measurement in a fresh subprocess")
    with NatsServer() as server:
        built = await _run_child(["memory-build", str(n), str(page_size), server.url], ChildMemory)
        progress(
            f"memory: built by the differ {built.bytes_per_entity:.0f} B/entity; "
            f"committed to KV in {built.commit_seconds:.1f} s ({built.chunks} chunks)"
        )
        loaded = await _run_child(["memory-load", str(n), str(page_size), server.url], ChildMemory)
        progress(
            f"memory: loaded from KV {loaded.bytes_per_entity:.0f} B/entity in {loaded.load_seconds:.1f} s"
        )
    baseline = await _run_child(["memory-baseline", str(n), str(page_size), ""], ChildMemory)
    progress(f"memory: baseline {baseline.bytes_per_entity:.0f} B/entity")
    return MemoryResult(entities=n, built=built, loaded=loaded, baseline=baseline)


def _child_main(args: list[str]) -> int:
    """``--child KIND ...``: the measurements that need a process of their own."""
    kind, rest = args[0], args[1:]
    result: msgspec.Struct
    if kind == "memory-build":
        result = anyio.run(_child_memory_build, int(rest[0]), int(rest[1]), rest[2] or None)
    elif kind == "memory-load":
        result = anyio.run(_child_memory_load, rest[2])
    elif kind == "memory-baseline":
        result = _child_memory_baseline(int(rest[0]), int(rest[1]))
    elif kind in ("cpu-ours", "cpu-baseline"):
        n, page_size, repeats, seed = (int(x) for x in rest)
        result = _child_cpu(kind.removeprefix("cpu-"), n, page_size, repeats, seed)
    elif kind == "simulator":
        anyio.run(_child_simulator, rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        return 0
    else:
        print(f"unknown child {kind!r}", file=sys.stderr)
        return 2
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0


# -- detection latency ----------------------------------------------------------------------------
ParsedEvent = tuple[str, str, str]
"""(what, entity id, raw value): what is "appeared", "changed" or "other"."""

_decode_event = msgspec.json.Decoder(Event).decode


def parse_our_event(data: bytes) -> ParsedEvent:
    event = _decode_event(data)
    if isinstance(event, TaskAppeared):
        return "appeared", event.entity_id, event.current.raw
    if isinstance(event, TaskStatusChanged | JobStatusChanged):
        return "changed", event.entity_id, event.current.raw
    return "other", "", ""


def parse_plain_event(data: bytes) -> ParsedEvent:
    event = json.loads(data)
    what = {"task-appeared": "appeared", "task-status-changed": "changed"}.get(event["type"], "other")
    return what, str(event["entity_id"]), str(event["current"])


class ChangeTracker:
    """Changes made in the simulator (with their time) matched to the events a subscriber receives.

    ``made`` runs on the bench's event loop, ``on_message`` on the subscriber's thread: a lock keeps
    the two apart.
    """

    def __init__(self, parse: Callable[[bytes], ParsedEvent]) -> None:
        self.parse = parse
        self._lock = threading.Lock()
        self.pending: dict[str, tuple[float, str]] = {}
        #: change events that arrived before the simulator's answer to "change" did (a close race)
        self.early: dict[str, tuple[str, float]] = {}
        self.samples: list[float] = []
        self.appeared = 0
        self.changes = 0

    def made(self, entity_id: str, raw: str, at: float) -> None:
        with self._lock:
            self.changes += 1
            early = self.early.pop(entity_id, None)
            if early is not None and early[0] == raw:
                self.samples.append(early[1] - at)
            else:
                self.pending[entity_id] = (at, raw)

    def busy(self, entity_id: str) -> bool:
        with self._lock:
            return entity_id in self.pending

    async def on_message(self, msg: Any) -> None:
        received = time.monotonic()
        what, entity_id, raw = self.parse(msg.data)
        with self._lock:
            if what == "appeared":
                self.appeared += 1
            elif what == "changed":
                change = self.pending.get(entity_id)
                if change is not None and change[1] == raw:
                    del self.pending[entity_id]
                    self.samples.append(received - change[0])
                else:
                    self.early[entity_id] = (raw, received)


@contextlib.contextmanager
def subscribed(url: str, subject: str, tracker: ChangeTracker) -> Iterator[None]:
    """A core-NATS subscriber in this process but on a thread and event loop of its own.

    A real subscriber does not share the poller's event loop: when the poller's loop is busy (a
    large first sweep), events still arrive and are timed on arrival, and the server does not cut
    the subscriber off as a slow consumer.
    """
    with anyio.from_thread.start_blocking_portal() as portal:
        nc = portal.call(functools.partial(nats.connect, url, max_reconnect_attempts=-1))
        try:
            portal.call(functools.partial(nc.subscribe, subject, cb=tracker.on_message))
            portal.call(nc.flush)
            yield
        finally:
            portal.call(nc.close)


class Scenario(ABC):
    """One vendor API at the size its bar names.

    Half of it runs in the simulator's process (``build``, ``apply_change``), half in the poller's
    (``source``, ``plain_poller``); both halves are built from the same (entities, page size).
    """

    vendor: str
    api: str
    label: str
    unit: str

    def __init__(self, entities: int, page_size: int) -> None:
        self.entities = entities
        self.page_size = page_size

    @property
    @abstractmethod
    def limit(self) -> int: ...

    @property
    def pages(self) -> int:
        return -(-self.entities // self.page_size)

    @property
    def floor(self) -> float:
        return self.pages / self.limit

    @abstractmethod
    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        """The simulator holding every entity, and the entities' ids."""

    @abstractmethod
    def apply_change(self, sim: Simulator, entity_id: str) -> str:
        """Change one entity's status in the simulator; returns its new raw value."""

    @abstractmethod
    def source(self, url: str) -> dict[str, Any]:
        """The ``[[sources]]`` entry pointing the Service at the simulator, sweeping continuously."""

    @abstractmethod
    def plain_poller(self, url: str, http: aiohttp.ClientSession, js: Any) -> PlainPoller: ...


class TencentScenario(Scenario):
    vendor = "tencent-ccc"
    api = LIST_API
    label = "Tencent CCC DescribeAutoCalloutTasks"
    unit = "tasks"

    @property
    def limit(self) -> int:
        return APIS[LIST_API]

    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=seed, rate_limit=self.limit)
        ids = [str(sim.add_task(APP, state=1, callees=10)) for _ in range(self.entities)]
        return sim, ids

    def apply_change(self, sim: Simulator, entity_id: str) -> str:
        assert isinstance(sim, TencentCccSimulator)
        task = sim.apps[APP].tasks[int(entity_id)]
        new = 5 if task.state == 1 else 1  # running ⇄ paused
        sim.set_state(APP, task.task_id, new)
        return str(new)

    def source(self, url: str) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "account": ACCOUNT,
            "secret_id": SECRET_ID,
            "secret_key": SECRET_KEY,
            "sdk_app_ids": [APP],
            "endpoint": url,
            "poll_interval": 0.001,  # back to back: every sweep takes longer than this
            "page_size": self.page_size,
        }

    def plain_poller(self, url: str, http: aiohttp.ClientSession, js: Any) -> PlainPoller:
        return PlainTencentPoller(
            http=http,
            js=js,
            endpoint=url,
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
            sdk_app_id=APP,
            page_size=self.page_size,
            limit=self.limit,
            account=ACCOUNT,
            subject_prefix=PLAIN_PREFIX,
        )


class OutboundBotScenario(Scenario):
    """One job group of ``entities`` jobs, every one executing; a change pauses or resumes one."""

    vendor = "alibaba-outboundbot"
    api = "ListJobsByGroup"
    label = "Alibaba OutboundBot ListJobsByGroup"
    unit = "jobs"
    instance = "bench-instance"
    group = "bench-group"
    access_key_id = "LTAIbenchmark"
    access_key_secret = "benchmark-outboundbot-secret"

    @property
    def limit(self) -> int:
        from poller.vendors.alibaba_outboundbot import APIS, LIST_API

        return APIS[LIST_API]

    def build(self, seed: int) -> tuple[Simulator, list[str]]:
        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        sim = OutboundBotSimulator(
            credentials={self.access_key_id: self.access_key_secret},
            seed=seed,
            rate_limit=self.limit,
            max_page_size=max(100, self.page_size),
        )
        sim.add_group(self.instance, self.group)
        ids = [sim.add_job(self.instance, self.group, status="Executing") for _ in range(self.entities)]
        return sim, ids

    def apply_change(self, sim: Simulator, entity_id: str) -> str:
        from poller.simulators.alibaba_outboundbot import OutboundBotSimulator

        assert isinstance(sim, OutboundBotSimulator)
        new = "Paused" if sim.job(entity_id).status == "Executing" else "Executing"
        sim.set_status(entity_id, new)
        return new

    def source(self, url: str) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "account": ACCOUNT,
            "instance_id": self.instance,
            "job_group_ids": [self.group],
            "access_key_id": self.access_key_id,
            "access_key_secret": self.access_key_secret,
            "endpoint": url,
            "poll_interval": 0.001,  # back to back: every sweep takes longer than this
            "page_size": self.page_size,
        }

    def plain_poller(self, url: str, http: aiohttp.ClientSession, js: Any) -> PlainPoller:
        from poller.secrets import Secret
        from poller.vendors.alibaba_common import RpcSigner
        from poller.vendors.alibaba_outboundbot import VERSION

        signer = RpcSigner(
            endpoint=url,
            version=VERSION,
            access_key_id=self.access_key_id,
            access_key_secret=Secret(self.access_key_secret),
            signature="v3",
        )
        return PlainOutboundBotPoller(
            http=http,
            js=js,
            signer=signer,
            instance_id=self.instance,
            job_group_id=self.group,
            page_size=self.page_size,
            limit=self.limit,
            account=ACCOUNT,
            subject_prefix=PLAIN_PREFIX,
        )


OUTBOUNDBOT_MODULES = ("poller.vendors.alibaba_outboundbot", "poller.simulators.alibaba_outboundbot")


def outboundbot_scenario(sizes: Sizes) -> Scenario | str:
    """The 100k-jobs row, or why it is not measured."""
    missing = [name for name in OUTBOUNDBOT_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"not measured: {', '.join(m.replace('.', '/') + '.py' for m in missing)} not present yet"
    try:
        scn = OutboundBotScenario(sizes.outboundbot_jobs, sizes.outboundbot_page_size)
        scn.limit  # noqa: B018  (imports the vendor module: fails here, not mid-run, if it is broken)
    except Exception as exc:
        return f"not measured: the OutboundBot modules do not load ({type(exc).__name__}: {exc})"
    return scn


SCENARIOS: dict[str, type[Scenario]] = {
    TencentScenario.vendor: TencentScenario,
    OutboundBotScenario.vendor: OutboundBotScenario,
}


# The simulator runs in a process of its own: it is the vendor, so neither its CPU nor its garbage
# collector may share the poller's event loop (an in-process simulator stamps arrivals late whenever
# the poller's loop is busy, and takes CPU from the poller). It speaks JSON lines on stdin/stdout.
async def _child_simulator(vendor: str, entities: int, page_size: int, seed: int) -> None:
    scn = SCENARIOS[vendor](entities, page_size)
    sim, ids = scn.build(seed)
    gc.collect()
    gc.freeze()  # the world is built once: keep it out of every later collection
    await sim.start()

    def answer(payload: object) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    answer({"url": sim.url, "ids": ids})
    try:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            op = command["op"]
            if op == "change":
                raw = scn.apply_change(sim, command["id"])
                answer({"raw": raw, "at": time.monotonic()})
            elif op == "stats":
                answer({"requests": len(sim.log.records), "throttled": sim.log.count("throttled")})
            elif op == "log":
                answer([[r.at, r.api, r.credential, r.status, r.outcome] for r in sim.log.records])
            elif op == "stop":
                answer({"stopped": True})
                break
    finally:
        await sim.stop()


class SimulatorProcess:
    """The parent's handle on a simulator subprocess (time.monotonic is one clock for both)."""

    def __init__(self, scn: Scenario, seed: int) -> None:
        self.scn = scn
        self.seed = seed
        self.url = ""
        self.ids: list[str] = []
        self._lock = anyio.Lock()
        self._process: Process | None = None
        self._reader: BufferedByteReceiveStream | None = None

    async def __aenter__(self) -> SimulatorProcess:
        scn = self.scn
        args = ["simulator", scn.vendor, str(scn.entities), str(scn.page_size), str(self.seed)]
        self._process = await anyio.open_process(_child_command(args), stderr=None, env=_child_env())
        assert self._process.stdout is not None
        self._reader = BufferedByteReceiveStream(self._process.stdout)
        hello = await self._read()
        self.url, self.ids = hello["url"], hello["ids"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        with anyio.move_on_after(10, shield=True):
            with contextlib.suppress(Exception):
                await self._call(op="stop")
            await process.wait()
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.aclose()

    async def _read(self) -> Any:
        assert self._reader is not None
        return json.loads(await self._reader.receive_until(b"\n", 1 << 28))

    async def _call(self, **command: Any) -> Any:
        assert self._process is not None and self._process.stdin is not None
        async with self._lock:
            await self._process.stdin.send(json.dumps(command).encode() + b"\n")
            return await self._read()

    async def change(self, entity_id: str) -> tuple[str, float]:
        """Change one entity now; returns its new raw value and the moment it changed."""
        answer = await self._call(op="change", id=entity_id)
        return str(answer["raw"]), float(answer["at"])

    async def stats(self) -> tuple[int, int]:
        answer = await self._call(op="stats")
        return int(answer["requests"]), int(answer["throttled"])

    async def log(self) -> RequestLog:
        rows = await self._call(op="log")
        return RequestLog([RequestRecord(float(a), str(b), str(c), int(d), str(e)) for a, b, c, d, e in rows])


async def _watch_sweeps(service: Service, ends: list[float], stop: anyio.Event) -> None:
    """Record when each successful poll cycle ends (the Service sets ``last_success``)."""
    last: float | None = None
    while not stop.is_set():
        for status in service.statuses.values():
            if status.last_success is not None and status.last_success != last:
                last = status.last_success
                ends.append(last)
        await anyio.sleep(0.01)


async def _wait(
    done: Callable[[], bool], timeout: float, every: float, report: Callable[[], Awaitable[None]]
) -> bool:
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + every
    while not done():
        if time.monotonic() > deadline:
            return False
        if time.monotonic() >= next_report:
            await report()
            next_report += every
        await anyio.sleep(0.02)
    return True


def arrival_rate(times: Sequence[float]) -> float:
    """Requests per second: the least-squares slope of the arrival count over time.

    Our limiter starts requests in bursts (a full window's worth at once, then a pause); a plain
    count over the window swings by up to one burst depending on where the window's edges fall.
    The slope of the cumulative count does not.
    """
    n = len(times)
    if n < 2:
        return 0.0
    mean_t = statistics.fmean(times)
    mean_i = (n - 1) / 2
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (i - mean_i) for i, t in enumerate(times)) / spread


@dataclass
class LatencyProbe:
    """One latency run's phases: first sweep, timed changes, drain; and its figures afterwards."""

    scn: Scenario
    name: str
    sim: SimulatorProcess
    tracker: ChangeTracker
    progress: Progress
    every: float
    started: float = 0.0
    ends: float = 0.0
    first_sweep_seconds: float = 0.0

    async def report(self, phase: str) -> None:
        t = self.tracker
        requests, throttled = await self.sim.stats()
        p50 = _quantile(t.samples, 0.5)
        self.progress(
            f"{self.name}: {phase}; {requests:,} requests, {throttled} throttled; "
            f"{t.appeared:,}/{self.scn.entities:,} appeared; changes {t.changes} seen {len(t.samples)}"
            + ("" if p50 is None else f", p50 {p50:.2f} s")
        )

    async def first_sweep(self) -> None:
        scn = self.scn
        self.progress(
            f"{self.name}: {scn.entities:,} {scn.unit}, {scn.pages} pages at {scn.limit} req/s "
            f"(floor {scn.floor:.2f} s); first sweep"
        )
        timeout = 4 * scn.floor + scn.entities / 500 + 30
        began = time.monotonic()
        everything = await _wait(
            lambda: self.tracker.appeared >= scn.entities,
            timeout,
            self.every,
            functools.partial(self.report, "first sweep"),
        )
        if not everything:
            raise RuntimeError(f"{self.name}: the first sweep did not publish every entity in time")
        self.first_sweep_seconds = time.monotonic() - began

    async def make_changes(self, seconds: float, per_second: float, seed: int) -> None:
        """Poisson arrivals, so change times are uniform with respect to the sweep's phase."""
        rng = random.Random(seed)
        ids = self.sim.ids
        self.started = time.monotonic()
        self.ends = self.started + seconds
        next_change = self.started
        next_report = self.started + self.every
        while True:
            next_change += rng.expovariate(per_second)
            if next_change >= self.ends:
                break
            await anyio.sleep(max(0.0, next_change - time.monotonic()))
            entity_id = rng.choice(ids)
            while self.tracker.busy(entity_id):
                entity_id = rng.choice(ids)
            raw, at = await self.sim.change(entity_id)
            self.tracker.made(entity_id, raw, at)
            if time.monotonic() >= next_report:
                await self.report(f"changing {time.monotonic() - self.started:.0f}/{seconds:.0f} s")
                next_report += self.every
        await anyio.sleep(max(0.0, self.ends - time.monotonic()))

    async def drain(self) -> None:
        """Changes made near the end are still timed; one never seen counts as missed."""
        await _wait(
            lambda: not self.tracker.pending,
            3 * self.scn.floor + 10,
            self.every,
            functools.partial(self.report, "draining"),
        )

    def result(self, who: str, log: RequestLog, sweep_ends: list[float]) -> RunResult:
        arrivals = log.times(self.scn.api)
        window = self.ends - self.started
        in_window = [t for t in arrivals if self.started <= t < self.ends]
        per_second = arrival_rate(in_window)
        steady = [t for t in sweep_ends if self.started <= t <= self.ends]
        periods = [b - a for a, b in itertools.pairwise(steady)]
        samples = self.tracker.samples
        return RunResult(
            who=who,
            window_seconds=round(window, 3),
            requests_in_window=len(in_window),
            per_second=per_second,
            limit_use=per_second / self.scn.limit,
            throttled=log.count("throttled", self.scn.api),
            max_in_window=max_in_window(arrivals),
            changes=self.tracker.changes,
            samples=len(samples),
            missed=len(self.tracker.pending),
            p50=_quantile(samples, 0.5),
            p99=_quantile(samples, 0.99),
            mean=statistics.fmean(samples) if samples else None,
            max=max(samples) if samples else None,
            sweep_seconds=statistics.median(periods) if periods else None,
            first_sweep_seconds=round(self.first_sweep_seconds, 3),
        )


def _bench_config(nats_url: str, source: dict[str, Any]) -> Config:
    return parse_config(
        {
            "nats": {"url": nats_url},
            "http": {"enabled": False},
            "logging": {"level": "WARNING"},
            "sources": [source],
        },
        path="<bench>",
        env={},
    )


async def latency_run(
    scn: Scenario, who: str, sizes: Sizes, seed: int, progress: Progress
) -> tuple[RunResult, list[float]]:
    """Fresh nats-server and simulator; the poller (ours or plain) sweeps; changes are timed."""
    ours = who == "ours"
    tracker = ChangeTracker(parse_our_event if ours else parse_plain_event)
    sweep_ends: list[float] = []
    with NatsServer() as server:
        subject = f"{OURS_PREFIX if ours else PLAIN_PREFIX}.>"
        async with SimulatorProcess(scn, seed) as sim, contextlib.AsyncExitStack() as stack:
            probe = LatencyProbe(scn, f"{scn.vendor} {who}", sim, tracker, progress, sizes.progress_every)
            stack.enter_context(subscribed(server.url, subject, tracker))
            nc = await nats.connect(server.url)
            stack.push_async_callback(nc.close)
            stop = anyio.Event()
            plain: PlainPoller | None = None
            service: Service | None = None
            if ours:
                service = Service(_bench_config(server.url, scn.source(sim.url)))
            else:
                js = nc.jetstream(timeout=10)
                await js.add_stream(stream_config("BASELINE", PLAIN_PREFIX))
                http = await stack.enter_async_context(aiohttp.ClientSession())
                plain = scn.plain_poller(sim.url, http, js)
                sweep_ends = plain.stats.sweeps
            # entered last, so left first: the pollers stop before the session and connection close
            tg = await stack.enter_async_context(anyio.create_task_group())
            if service is not None:
                tg.start_soon(service.run)
                tg.start_soon(_watch_sweeps, service, sweep_ends, stop)
            elif plain is not None:
                tg.start_soon(plain.run, stop)
            await probe.first_sweep()
            await probe.make_changes(sizes.change_seconds, sizes.changes_per_second, seed)
            await probe.drain()
            stop.set()
            if service is not None:
                service.stop()
            log = await sim.log()
    result = probe.result(who, log, sweep_ends)
    progress(
        f"{probe.name}: {result.limit_use:.1%} of the limit, {result.throttled} throttled, "
        f"p50 {_fmt(result.p50, 's')}, p99 {_fmt(result.p99, 's')} over {result.samples} changes"
    )
    return result, log.times(scn.api)


async def bench_latency(
    sizes: Sizes,
    seed: int,
    progress: Progress,
    arrivals: dict[str, tuple[int, list[float]]],
    vendors: Sequence[str] = (),
) -> list[LatencyRow]:
    rows: list[LatencyRow] = []
    candidates: list[tuple[str, str, int, int, Scenario | str]] = [
        (
            "tencent-ccc",
            LIST_API,
            sizes.tencent_tasks,
            sizes.tencent_page_size,
            TencentScenario(sizes.tencent_tasks, sizes.tencent_page_size),
        ),
        (
            "alibaba-outboundbot",
            "ListJobsByGroup",
            sizes.outboundbot_jobs,
            sizes.outboundbot_page_size,
            outboundbot_scenario(sizes),
        ),
    ]
    for vendor, api, entities, page_size, scn in candidates:
        if vendors and vendor not in vendors:
            continue
        if isinstance(scn, str):
            progress(f"{vendor} {api}: {scn}")
            rows.append(
                LatencyRow(
                    vendor=vendor,
                    api=api,
                    label=f"{vendor} {api}",
                    entities=entities,
                    page_size=page_size,
                    pages=-(-entities // page_size),
                    limit=0,
                    floor_seconds=0.0,
                    bar_seconds=0.0,
                    ideal_p50=0.0,
                    ideal_p99=0.0,
                    measured=False,
                    note=scn,
                )
            )
            continue
        ours, ours_arrivals = await latency_run(scn, "ours", sizes, seed, progress)
        arrivals[f"{vendor} ours"] = (scn.limit, ours_arrivals)
        plain, plain_arrivals = await latency_run(scn, "baseline", sizes, seed, progress)
        arrivals[f"{vendor} baseline"] = (scn.limit, plain_arrivals)
        rows.append(
            LatencyRow(
                vendor=vendor,
                api=api,
                label=scn.label,
                entities=entities,
                page_size=page_size,
                pages=scn.pages,
                limit=scn.limit,
                floor_seconds=scn.floor,
                bar_seconds=LATENCY_FACTOR * scn.floor,
                ideal_p50=0.5 * scn.floor,
                ideal_p99=0.99 * scn.floor,
                measured=True,
                ours=ours,
                baseline=plain,
            )
        )
    return rows


# -- the table ------------------------------------------------------------------------------------
def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}"


def _ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline


def figures(
    latency: list[LatencyRow],
    decode: DecodeDiffResult | None,
    publish: PublishResult | None,
    memory: MemoryResult | None,
) -> list[Figure]:
    out: list[Figure] = []

    def add(
        key: str,
        group: str,
        label: str,
        unit: str,
        ours: float | None,
        base: float | None,
        target: str,
        meets: bool | None,
        note: str = "",
    ) -> None:
        out.append(
            Figure(
                key=key,
                group=group,
                label=label,
                unit=unit,
                ours=ours,
                baseline=base,
                ratio=_ratio(ours, base),
                target=target,
                meets=meets,
                note=note,
            )
        )

    for row in latency:
        group = f"{row.label}, {row.entities:,} entities, {row.pages} pages"
        if row.measured and row.ours is not None and row.baseline is not None:
            group += f" at {row.limit} req/s (floor {row.floor_seconds:.2f} s)"
            o, b = row.ours, row.baseline
            add(
                f"{row.vendor}.limit_use",
                group,
                f"limit use (req/s ÷ {row.limit})",
                "%",
                100 * o.limit_use,
                100 * b.limit_use,
                f"≥ {LIMIT_USE_TARGET:.0%}",
                o.limit_use >= LIMIT_USE_TARGET,
            )
            add(
                f"{row.vendor}.throttled",
                group,
                "throttling answers",
                "n",
                o.throttled,
                b.throttled,
                "0",
                o.throttled == 0,
            )
            bar = f"≤ {row.bar_seconds:.2f} s"
            add(
                f"{row.vendor}.latency_p50",
                group,
                "detection latency p50",
                "s",
                o.p50,
                b.p50,
                bar,
                o.p50 is not None and o.p50 <= row.bar_seconds,
            )
            add(
                f"{row.vendor}.latency_p99",
                group,
                "detection latency p99",
                "s",
                o.p99,
                b.p99,
                bar,
                o.p99 is not None and o.p99 <= row.bar_seconds,
            )
            add(
                f"{row.vendor}.first_sweep",
                group,
                "first sweep, every entity published",
                "s",
                o.first_sweep_seconds,
                b.first_sweep_seconds,
                "(no bar)",
                None,
            )
        else:
            for key, label in (
                ("limit_use", "limit use"),
                ("throttled", "throttling answers"),
                ("latency_p50", "detection latency p50"),
                ("latency_p99", "detection latency p99"),
                ("first_sweep", "first sweep, every entity published"),
            ):
                add(f"{row.vendor}.{key}", group, label, "", None, None, "", None, row.note)
    if decode is not None:
        group = f"CPU, one core ({decode.entities:,} Tencent tasks, pages of {decode.page_size})"
        add(
            "decode_diff",
            group,
            f"decode+diff, steady sweep ({decode.changed_fraction:.0%} changed)",
            "/s",
            decode.ours_steady.per_second,
            decode.baseline_steady.per_second,
            f"≥ {DECODE_DIFF_TARGET:,.0f}/s",
            decode.ours_steady.per_second >= DECODE_DIFF_TARGET,
        )
        add(
            "decode_diff_first_sweep",
            group,
            "decode+diff, first sweep (all appear)",
            "/s",
            decode.ours_first_sweep.per_second,
            decode.baseline_first_sweep.per_second,
            "(no bar)",
            None,
        )
    if publish is not None:
        add(
            "publish",
            "JetStream, local nats-server, file storage",
            "events published and acked",
            "/s",
            publish.ours.per_second,
            publish.baseline.per_second,
            f"≥ {PUBLISH_TARGET:,.0f}/s",
            publish.ours.per_second >= PUBLISH_TARGET,
        )
    if memory is not None:
        group = f"Memory, {memory.entities:,} tracked entities (RSS delta, fresh subprocess)"
        base = memory.baseline.bytes_per_entity
        target = f"≤ {BYTES_PER_ENTITY_TARGET:.0f} B"
        built, loaded = memory.built.bytes_per_entity, memory.loaded.bytes_per_entity
        add(
            "memory_per_entity",
            group,
            "per entity, worst of built / loaded",
            "B",
            max(built, loaded),
            base,
            target,
            max(built, loaded) <= BYTES_PER_ENTITY_TARGET,
        )
        add(
            "memory_per_entity_built",
            group,
            "per entity, map built by the differ",
            "B",
            built,
            base,
            target,
            built <= BYTES_PER_ENTITY_TARGET,
        )
        add(
            "memory_per_entity_loaded",
            group,
            "per entity, map loaded from KV",
            "B",
            loaded,
            base,
            target,
            loaded <= BYTES_PER_ENTITY_TARGET,
        )
        add(
            "kv_bytes_per_entity",
            group,
            "KV encoding per entity (baseline: JSON)",
            "B",
            memory.built.encoded_bytes / memory.built.entities,
            memory.baseline.encoded_bytes / memory.baseline.entities,
            "(no bar)",
            None,
        )
    return out


def render_table(results: Results) -> str:
    lines: list[str] = []
    widths = (46, 13, 13, 9, 14)
    header = ("figure", "ours", "baseline", "ours/base", "target")
    lines.append(" ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " ok?")
    lines.append("-" * (sum(widths) + len(widths) + 4))
    group = None
    for fig in results.figures:
        if fig.group != group:
            group = fig.group
            lines.append(group)
        if fig.ours is None:
            lines.append(f"  {fig.label.ljust(widths[0] - 2)} {fig.note}")
            continue
        ratio = "—" if fig.ratio is None else f"{fig.ratio:.2f}×"
        status = {True: "ok", False: "GAP", None: ""}[fig.meets]
        cells = (f"  {fig.label}", _fmt(fig.ours, fig.unit), _fmt(fig.baseline, fig.unit), ratio, fig.target)
        lines.append(" ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " " + status)
    m = results.machine
    lines.append("")
    lines.append(
        f"{m.cpus} CPUs, Python {m.python}; load average before {m.load_before}, after {m.load_after}; "
        f"{results.seconds:.0f} s"
    )
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------------
PARTS = ("cpu", "memory", "publish", "latency", "push")


def push_figures(push: PushResult | None) -> list[Figure]:
    """The push row: ours only (a poller without push has no such path to compare with)."""
    if push is None:
        return []
    group = (
        f"tencent-ccc push, {push.calls} calls, {push.drop_fraction:.0%} of pushes dropped, "
        f"polled every {push.poll_interval:g} s"
    )
    share = 100 * push.reconciled / push.dropped if push.dropped else None
    none = "no baseline: push only"
    return [
        Figure(
            key="push.latency_p50",
            group=group,
            label="push → subscriber p50",
            unit="s",
            ours=push.push_p50,
            baseline=None,
            ratio=None,
            target="—",
            meets=None,
            note=none,
        ),
        Figure(
            key="push.latency_p99",
            group=group,
            label="push → subscriber p99",
            unit="s",
            ours=push.push_p99,
            baseline=None,
            ratio=None,
            target="≤ 1 s",
            meets=None if push.push_p99 is None else push.push_p99 <= 1.0,
            note=none,
        ),
        Figure(
            key="push.reconciled",
            group=group,
            label="dropped pushes reconciled by polling",
            unit="%",
            ours=share,
            baseline=None,
            ratio=None,
            target="100 %",
            meets=None if share is None else push.reconciled == push.dropped,
            note=none,
        ),
    ]


async def run_bench(
    *,
    quick: bool,
    seed: int = 1,
    parts: Sequence[str] = PARTS,
    vendors: Sequence[str] = (),
    progress: Progress | None = None,
    command: str = "poller bench",
) -> Outcome:
    progress = progress or Progress()
    sizes = QUICK if quick else FULL
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    load_before = _load()
    progress(f"{command}: load average {load_before} on {os.cpu_count()} CPUs")
    decode = await bench_decode_diff(sizes, seed, progress) if "cpu" in parts else None
    memory = await bench_memory(sizes, progress) if "memory" in parts else None
    arrivals: dict[str, tuple[int, list[float]]] = {}
    latency = await bench_latency(sizes, seed, progress, arrivals, vendors) if "latency" in parts else []
    publish = await bench_publish(sizes, progress) if "publish" in parts else None
    push = (
        await bench_push(
            sizes.push_calls, sizes.push_per_second, progress, poll_interval=sizes.push_poll_interval
        )
        if "push" in parts
        else None
    )
    results = Results(
        command=command,
        quick=quick,
        started_at=started_at,
        seconds=round(time.monotonic() - started, 1),
        machine=Machine(
            cpus=os.cpu_count() or 0,
            python=platform.python_version(),
            platform=platform.platform(),
            load_before=load_before,
            load_after=_load(),
        ),
        figures=figures(latency, decode, publish, memory) + push_figures(push),
        latency=latency,
        decode_diff=decode,
        publish=publish,
        memory=memory,
        push=push,
    )
    return Outcome(results=results, arrivals=arrivals)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poller bench",
        description="Measure the performance bars (README, Performance) against simulators and a "
        "local nats-server, beside a plain baseline; print a table and write JSON.",
        epilog="Exit codes: 0 finished, 130 interrupted (Ctrl-C or SIGTERM); 2 bad usage.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds (smoke test)")
    parser.add_argument(
        "--json",
        dest="json_path",
        default="bench-results.json",
        metavar="PATH",
        help="where to write the results (default: bench-results.json)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated changes")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts (repeatable)")
    parser.add_argument(
        "--vendor",
        action="append",
        choices=sorted(SCENARIOS),
        help="latency part: only this vendor's row (repeatable)",
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    return parser


def run_cli(argv: Sequence[str] | None = None, out: Any = None) -> Outcome:
    """Everything ``main`` does, returning the outcome (the tests read the request logs from it)."""
    args = build_parser().parse_args(argv)
    command = " ".join(["poller bench", *(argv if argv is not None else sys.argv[1:])])
    outcome = anyio.run(
        functools.partial(
            run_bench,
            quick=args.quick,
            seed=args.seed,
            parts=args.only or PARTS,
            vendors=args.vendor or (),
            command=command,
        )
    )
    Path(args.json_path).write_bytes(msgspec.json.format(msgspec.json.encode(outcome.results)) + b"\n")
    print(render_table(outcome.results), file=out or sys.stdout, flush=True)
    print(f"\nresults written to {args.json_path}", file=out or sys.stdout, flush=True)
    return outcome


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return _child_main(args.child)
    # SIGTERM unwinds like Ctrl-C: the nats-servers and simulators this run started are stopped
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_cli(argv)
    except KeyboardInterrupt:
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0

