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
            publisher = Publisher(nc, subject_prefix=OURS_PREFIX, ack_timeout=10.0)
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
            core = await core_publish_rate(nc, events)
            progress(f"publish: core NATS publish of the same messages {core:,.0f}/s (the client's ceiling)")
        finally:
            await nc.close()
    return PublishResult(
        ours=Throughput(items=len(events), rates=[round(ours)], per_second=ours),
        baseline=Throughput(items=len(plain), rates=[round(baseline)], per_second=baseline),
        event_bytes=round(event_bytes, 1),
        core=Throughput(items=len(events), rates=[round(core)], per_second=core),
    )


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
