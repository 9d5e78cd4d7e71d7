"""The cluster row: three JetStream servers joined by routes, the poller's stream at R3.

Three measurements on one cluster, in this order:

- our Publisher into an R3 stream (the client on a follower, then on the leader) beside the same
  events into a single server started for the comparison;
- the stream leader SIGKILLed while the Publisher publishes at a steady rate: how long until a
  publish sent after the kill is acked, and the stream read back by ``Nats-Msg-Id`` (nothing lost,
  nothing doubled; a retried publish that had landed is acked as a duplicate);
- poller processes sharing accounts by leases (:mod:`poller.tools.bench.cluster_replicas`).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import msgspec
import nats

from poller.config import NatsConfig
from poller.pipeline.publisher import Publisher
from poller.runtime.connection import close_nats, connect
from poller.tools.bench.cluster_replicas import bench_replicas
from poller.tools.bench.progress import Progress
from poller.tools.bench.publish import status_events, stream_config
from poller.tools.bench.readback import stream_messages
from poller.tools.bench.results import (
    ClusterPublish,
    ClusterResult,
    FailoverKill,
    FailoverResult,
    Throughput,
)
from poller.tools.bench.sizes import Sizes
from poller.tools.natsserver import NatsCluster, NatsServer
from schemas import EventBase

__all__ = ["bench_cluster", "renamed"]

T = TypeVar("T")

R3_STREAM, R3_PREFIX = "BENCH_R3", "r3"
SINGLE_STREAM, SINGLE_PREFIX = "BENCH_R1", "r1"
FAILOVER_STREAM, FAILOVER_PREFIX = "FAILOVER", "failover"
#: events acked just before each kill that are sent again once the new leader answers
RESENT = 100
#: seconds between probe publishes, which time the cluster's own recovery beside the Publisher's
PROBE_EVERY = 0.05


async def bench_cluster(
    sizes: Sizes, seed: int, progress: Progress, arrivals: dict[str, tuple[int, list[float]]] | None = None
) -> ClusterResult:
    with NatsCluster() as cluster:
        await cluster.wait_for_jetstream()
        progress(f"cluster: {len(cluster.servers)} JetStream servers joined by routes")
        publish = await _r3_publish(cluster, sizes, progress)
        failover = await _failover(cluster, sizes, progress)
        replicas = await bench_replicas(cluster, sizes, seed, progress, arrivals)
    return ClusterResult(servers=len(cluster.servers), publish=publish, failover=failover, replicas=replicas)


# -- helpers ---------------------------------------------------------------------------------------
def renamed(events: Sequence[EventBase], tag: str, first: int = 0) -> list[EventBase]:
    """The same events under fresh ids: the ids are content hashes, and a stream drops repeats."""
    return [
        msgspec.structs.replace(event, event_id=f"{tag}-{first + i:08d}") for i, event in enumerate(events)
    ]


async def _retried(call: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """A cluster request repeated while the cluster elects leaders (its answers fail meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.1)


async def _leader(js: Any, stream: str) -> str:
    async def ask() -> str:
        info = await js.stream_info(stream)
        if info.cluster is None or not info.cluster.leader:
            raise RuntimeError(f"stream {stream} has no leader yet")
        return str(info.cluster.leader)

    return await _retried(ask)


async def _until_current(js: Any, stream: str, peers: int) -> None:
    """Until the stream has a leader and every other server is a current replica again."""

    async def ask() -> None:
        info = await js.stream_info(stream)
        cluster = info.cluster
        replicas = (cluster.replicas or []) if cluster is not None else []
        if (
            cluster is None
            or not cluster.leader
            or len(replicas) != peers - 1
            or not all(r.current and not r.offline for r in replicas)
        ):
            raise RuntimeError(f"stream {stream} is catching up")

    await _retried(ask)


async def _connect(urls: list[str]) -> Any:
    """A connection made as the Service makes it (its reconnect settings), to these servers."""

    async def nothing() -> None:
        return None

    return await connect(NatsConfig(servers=urls), on_disconnected=nothing, on_reconnected=nothing)


# -- events/s through R3 ---------------------------------------------------------------------------
async def _timed_publish(nc: Any, prefix: str, events: list[EventBase]) -> float:
    publisher = Publisher(nc, subject_prefix=prefix, ack_timeout=10.0)
    started = time.perf_counter()
    await publisher.publish(events, "bench")
    rate = len(events) / (time.perf_counter() - started)
    if publisher.stats.published != len(events):
        raise RuntimeError(f"publisher stored {publisher.stats.published} of {len(events)} events")
    return rate


async def _r3_publish(cluster: NatsCluster, sizes: Sizes, progress: Progress) -> ClusterPublish:
    n, repeats = sizes.cluster_publish_events, sizes.cluster_publish_repeats
    template: list[EventBase] = list(status_events(n))
    rates: dict[str, list[float]] = {"single": [], "follower": [], "leader": []}
    admin = await nats.connect(servers=cluster.urls)
    try:
        js = admin.jetstream(timeout=10)
        await _retried(lambda: js.add_stream(stream_config(R3_STREAM, R3_PREFIX, replicas=3)))
        leader = cluster.by_name(await _leader(js, R3_STREAM))
        follower = next(s for s in cluster.servers if s is not leader)
        with NatsServer() as single:
            one = await nats.connect(single.url)
            on_follower = await nats.connect(follower.url)
            on_leader = await nats.connect(leader.url)
            try:
                await one.jetstream().add_stream(stream_config(SINGLE_STREAM, SINGLE_PREFIX))
                progress(
                    f"cluster: {n:,} events × {repeats}: a single server, then R3 via a follower, the leader"
                )
                # interleaved, so a change in the machine's load lands on all three alike
                for r in range(repeats):
                    for who, nc, prefix in (
                        ("single", one, SINGLE_PREFIX),
                        ("follower", on_follower, R3_PREFIX),
                        ("leader", on_leader, R3_PREFIX),
                    ):
                        rates[who].append(await _timed_publish(nc, prefix, renamed(template, f"{who}-{r}")))
            finally:
                for nc in (one, on_follower, on_leader):
                    await nc.close()
        await js.delete_stream(R3_STREAM)
    finally:
        await admin.close()

    def throughput(who: str) -> Throughput:
        return Throughput(
            items=n, rates=[round(r) for r in rates[who]], per_second=statistics.median(rates[who])
        )

    result = ClusterPublish(
        events=n,
        single=throughput("single"),
        r3_follower=throughput("follower"),
        r3_leader=throughput("leader"),
    )
    progress(
        f"cluster: single {result.single.per_second:,.0f}/s; R3 via a follower "
        f"{result.r3_follower.per_second:,.0f}/s, via the leader {result.r3_leader.per_second:,.0f}/s"
    )
    return result


# -- failover after a stream-leader kill ---------------------------------------------------------
class _AckStamps:
    """When each of the Publisher's acked publishes was sent (its round's start) and acked."""

    def __init__(self) -> None:
        #: (sent, acked) of every publish that was acked
        self.acks: list[tuple[float, float]] = []

    def published(self, _event: EventBase, seconds: float) -> None:
        now = time.monotonic()
        self.acks.append((now - seconds, now))


def _recovered(acks: list[tuple[float, float]], killed_at: float) -> float | None:
    """Kill → the first ack of a publish sent after it."""
    after = [acked for sent, acked in acks if sent >= killed_at]
    return min(after) - killed_at if after else None


def _failover_event(template: Sequence[EventBase], n: int) -> EventBase:
    """The ``n``-th event :func:`_publish_steadily` published (its batches are the template renamed)."""
    return msgspec.structs.replace(template[n % len(template)], event_id=f"failover-{n:08d}")


async def _publish_steadily(
    publisher: Publisher, template: list[EventBase], rate: float, stop: anyio.Event, published: list[str]
) -> None:
    """Batches at a steady rate; a batch held up by the failover is not made up for with a burst."""
    batch = len(template)
    next_at = time.monotonic()
    while not stop.is_set():
        events = renamed(template, "failover", len(published))
        await publisher.publish(events, "bench")
        published.extend(e.event_id for e in events)
        next_at = max(next_at + batch / rate, time.monotonic())
        await anyio.sleep(max(0.0, next_at - time.monotonic()))


async def _probe(js: Any, stop: anyio.Event, acks: list[tuple[float, float]]) -> None:
    """A publish every few milliseconds, none waiting for another: when the stream answers again."""

    async def once(n: int) -> None:
        sent = time.monotonic()
        with contextlib.suppress(Exception):  # no leader yet: a later probe finds out
            await js.publish(
                f"{FAILOVER_PREFIX}.probe", b"", headers={"Nats-Msg-Id": f"probe-{n}"}, timeout=2
            )
            acks.append((sent, time.monotonic()))

    async with anyio.create_task_group() as tg:
        n = 0
        while not stop.is_set():
            n += 1
            tg.start_soon(once, n)
            await anyio.sleep(PROBE_EVERY)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The warnings a leader kill makes the poller log are what is measured: kept off the bench's output."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


async def _ignore(_exc: Exception) -> None:
    return None


async def _failover(cluster: NatsCluster, sizes: Sizes, progress: Progress) -> FailoverResult:
    defaults = NatsConfig()
    template: list[EventBase] = list(status_events(sizes.cluster_failover_batch))
    options: dict[str, Any] = {"reconnect_time_wait": 0.1, "max_reconnect_attempts": -1, "error_cb": _ignore}
    admin = await nats.connect(servers=cluster.urls, **options)
    prober = await nats.connect(servers=cluster.urls, **options)
    poller_nc = await _connect(cluster.urls)
    kills: list[FailoverKill] = []
    published: list[str] = []
    resent = resent_duplicates = 0
    probe_acks: list[tuple[float, float]] = []
    try:
        js = admin.jetstream(timeout=5)
        await _retried(lambda: js.add_stream(stream_config(FAILOVER_STREAM, FAILOVER_PREFIX, replicas=3)))
        await _until_current(js, FAILOVER_STREAM, len(cluster.servers))
        stamped = _AckStamps()
        failures: Counter[str] = Counter()
        publisher = Publisher(
            poller_nc,
            subject_prefix=FAILOVER_PREFIX,
            ack_timeout=defaults.ack_timeout,
            on_published=stamped.published,
            on_failure=lambda why: failures.update([why.split(":", 1)[0]]),
        )
        stop = anyio.Event()
        progress(
            f"cluster: the stream leader SIGKILLed {sizes.cluster_kills}× while the Publisher publishes "
            f"{sizes.cluster_failover_rate:g} events/s (ack timeout {defaults.ack_timeout:g} s)"
        )
        with _quiet("poller", "nats"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    _publish_steadily, publisher, template, sizes.cluster_failover_rate, stop, published
                )
                tg.start_soon(_probe, prober.jetstream(), stop, probe_acks)
                await anyio.sleep(1.0)
                for _ in range(sizes.cluster_kills):
                    name = await _leader(js, FAILOVER_STREAM)
                    server = cluster.by_name(name)
                    url = poller_nc.connected_url
                    on_leader = url is not None and url.port == server.port
                    acked_before = len(published)
                    killed_at = time.monotonic()
                    server.kill()
                    with anyio.move_on_after(90):
                        while _recovered(stamped.acks, killed_at) is None:  # noqa: ASYNC110 (a callback fills it)
                            await anyio.sleep(0.05)
                    seconds = _recovered(stamped.acks, killed_at)
                    new_leader = await _leader(js, FAILOVER_STREAM)
                    # what a publish whose ack the kill swallowed does: sent again, same ids, to the
                    # new leader, which must know them from the old one
                    again = [
                        _failover_event(template, j)
                        for j in range(max(0, acked_before - RESENT), acked_before)
                    ]
                    resender = Publisher(
                        poller_nc,
                        subject_prefix=FAILOVER_PREFIX,
                        ack_timeout=defaults.ack_timeout,
                    )
                    await resender.publish(again, "bench")
                    resent += len(again)
                    resent_duplicates += resender.stats.duplicates
                    kills.append(
                        FailoverKill(
                            leader=name,
                            client_on_leader=on_leader,
                            seconds=None if seconds is None else round(seconds, 3),
                            probe_seconds=_rounded(_recovered(probe_acks, killed_at)),
                            new_leader=new_leader,
                        )
                    )
                    progress(
                        f"cluster: killed {name} (the Publisher {'on it' if on_leader else 'elsewhere'}): "
                        f"acked again after {_seconds(seconds)}, probe {_seconds(kills[-1].probe_seconds)}; "
                        f"new leader {new_leader}"
                    )
                    await anyio.sleep(1.0)
                    await anyio.to_thread.run_sync(server.start)
                    await _until_current(js, FAILOVER_STREAM, len(cluster.servers))
                    await anyio.sleep(1.0)
                stop.set()
        stored = await stream_messages(js, FAILOVER_STREAM, f"{FAILOVER_PREFIX}.>")
        counts = Counter(headers.get("Nats-Msg-Id", "") for headers, _ in stored)
    finally:
        await close_nats(poller_nc)
        await prober.close()
        await admin.close()
    ours = {msg_id: c for msg_id, c in counts.items() if msg_id.startswith("failover-")}
    expected = set(published)
    result = FailoverResult(
        kills=kills,
        rate=sizes.cluster_failover_rate,
        batch=sizes.cluster_failover_batch,
        ack_timeout=defaults.ack_timeout,
        published=len(published),
        stored=len(ours),
        lost=len(expected - ours.keys()),
        doubled=sum(c - 1 for c in ours.values()),
        unexpected=len(ours.keys() - expected),
        retries=publisher.stats.retries,
        duplicate_acks=publisher.stats.duplicates,
        failures=dict(failures),
        resent=resent,
        resent_duplicates=resent_duplicates,
    )
    progress(
        f"cluster: {result.published:,} events published, {result.stored:,} in the stream; "
        f"{result.lost} lost, {result.doubled} doubled; {result.retries} retried, "
        f"{result.duplicate_acks} acked as duplicates; of {resent} events the old leaders had acked, "
        f"sent again, {resent_duplicates} acked as duplicates"
    )
    return result


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"
