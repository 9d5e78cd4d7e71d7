"""Publishing into a local JetStream: our Publisher beside awaited one-by-one publishes and core NATS."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
from nats.js.api import StorageType, StreamConfig

from poller.config import NatsConfig
from poller.pipeline.differ import diff
from poller.pipeline.publisher import Publisher
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import SourceState
from poller.pipeline.subjects import SOURCE_HEADER, subject_for
from poller.tools.bench.baseline import (
    plain_publish,
)
from poller.tools.bench.progress import Progress
from poller.tools.bench.results import PublishResult, Throughput
from poller.tools.bench.sizes import APP, FIRST_TASK_ID, OURS_PREFIX, PLAIN_PREFIX, PRIVACY, SOURCE, Sizes
from poller.tools.natsserver import NatsServer
from schemas import EntityKind, EventBase, TaskState, TaskStatusChanged

__all__ = ["bench_publish", "core_publish_rate", "status_events", "stream_config"]

#: the core-publish subjects: captured by no stream
CORE_PREFIX = "core"


# -- publish -------------------------------------------------------------------------------------
def stream_config(name: str, prefix: str, replicas: int = 1) -> StreamConfig:
    """The stream the Service creates, for another name, subject prefix and replica count."""
    defaults = NatsConfig()
    return StreamConfig(
        name=name,
        subjects=[f"{prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=defaults.duplicate_window,
        max_age=defaults.max_age_days * 86400,
        num_replicas=replicas,
    )


def status_events(n: int, first_task: int = FIRST_TASK_ID) -> list[TaskStatusChanged]:
    """``n`` status changes exactly as the differ derives them (running → paused), of the tasks
    numbered from ``first_task`` (other numbers, other event ids)."""

    def snapshots(state: TaskState, raw: str) -> list[EntitySnapshot]:
        return [
            EntitySnapshot(
                kind=EntityKind.TASK,
                id=str(first_task + i),
                state=state,
                raw_state=raw,
                parent_id=str(APP),
                name=f"task-{first_task + i}",
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


#: events published once through each path before timing (connection, stream files, subscription)
WARM_UP_EVENTS = 2_000


async def bench_publish(sizes: Sizes, progress: Progress) -> PublishResult:
    """Ours and core NATS publish of the same events, interleaved, the median of the repeats each.

    Every repeat publishes events of other tasks (fresh ids, so none is a duplicate) into the same
    stream; ours and core alternate which goes first, so a load swing hits both.
    """
    n, repeats = sizes.publish_events, sizes.publish_repeats
    rounds = [status_events(n, FIRST_TASK_ID + r * n) for r in range(repeats)]
    warm = status_events(WARM_UP_EVENTS, FIRST_TASK_ID + repeats * n)
    plain = [msgspec.to_builtins(e) for e in rounds[0][: sizes.baseline_publish_events]]
    event_bytes = statistics.fmean(len(msgspec.json.encode(e)) for e in rounds[0][:1000])
    ours_rates: list[float] = []
    core_rates: list[float] = []
    with NatsServer() as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream(timeout=10)
            await js.add_stream(stream_config("BENCH", OURS_PREFIX))
            await js.add_stream(stream_config("BASELINE", PLAIN_PREFIX))
            publisher = Publisher(nc, subject_prefix=OURS_PREFIX, ack_timeout=10.0)
            await _acked_rate(publisher, warm)
            await core_publish_rate(nc, warm)
            progress(f"publish: {repeats} × {n:,} events through our Publisher and core NATS, interleaved")
            for r, events in enumerate(rounds):
                if r % 2:
                    core_rates.append(await core_publish_rate(nc, events))
                    ours_rates.append(await _acked_rate(publisher, events))
                else:
                    ours_rates.append(await _acked_rate(publisher, events))
                    core_rates.append(await core_publish_rate(nc, events))
                progress(f"publish: ours {ours_rates[-1]:,.0f} events/s, core {core_rates[-1]:,.0f}/s")
            progress(f"publish: baseline: {len(plain):,} awaited publishes")
            started = time.perf_counter()
            await plain_publish(js, PLAIN_PREFIX, plain)
            baseline = len(plain) / (time.perf_counter() - started)
            progress(f"publish: baseline {baseline:,.0f} events/s")
        finally:
            await nc.close()
    ours, core = statistics.median(ours_rates), statistics.median(core_rates)
    return PublishResult(
        ours=Throughput(items=n, rates=[round(x) for x in ours_rates], per_second=ours),
        baseline=Throughput(items=len(plain), rates=[round(baseline)], per_second=baseline),
        event_bytes=round(event_bytes, 1),
        core=Throughput(items=n, rates=[round(x) for x in core_rates], per_second=core),
    )


async def _acked_rate(publisher: Publisher, events: Sequence[EventBase]) -> float:
    """Events/s of one ``publish``, every event stored afresh."""
    before = publisher.stats.published
    started = time.perf_counter()
    await publisher.publish(events, "bench")
    rate = len(events) / (time.perf_counter() - started)
    if publisher.stats.published - before != len(events):
        raise RuntimeError(f"publisher stored {publisher.stats.published - before} of {len(events)} events")
    return rate


async def core_publish_rate(nc: Any, events: Sequence[EventBase]) -> float:
    """Messages/s of a core NATS publish (no ack) of the same subjects, payloads and headers.

    The subjects get a prefix no stream captures, so the server only routes them: what this client
    library can push through one connection, the ceiling any acked publish is measured against.
    """
    encode = msgspec.json.Encoder().encode
    messages = [
        (subject_for(CORE_PREFIX, e), encode(e), {"Nats-Msg-Id": e.event_id, SOURCE_HEADER: "bench"})
        for e in events
    ]
    started = time.perf_counter()
    for subject, payload, headers in messages:
        await nc.publish(subject, payload, headers=headers)
    await nc.flush(timeout=60)
    return len(messages) / (time.perf_counter() - started)
