"""The shapes of ``bench-results.json``: one Struct per section's result."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

__all__ = [
    "ChildMemory",
    "ClusterPublish",
    "ClusterResult",
    "DecodeDiffResult",
    "FailoverKill",
    "FailoverResult",
    "Figure",
    "LatencyRow",
    "Machine",
    "MemoryResult",
    "Outcome",
    "PublishResult",
    "PushResult",
    "ReplicaShare",
    "ReplicasResult",
    "Results",
    "RunResult",
    "Throughput",
]


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
    #: finished entities restarted during the run, timed apart from the live changes above: how
    #: many, how many were never seen, and restart → its status-change event received
    restarts: int = 0
    restarts_missed: int = 0
    restart_p50: float | None = None
    restart_max: float | None = None


class LatencyRow(msgspec.Struct, frozen=True, kw_only=True):
    vendor: str
    #: the scenario: its figures' key prefix (the vendor for the full-sweep rows)
    name: str
    api: str
    label: str
    entities: int
    page_size: int
    pages: int
    limit: int
    #: pages ÷ rate: the time one full sweep takes at the limit (the full-sweep floor)
    floor_seconds: float
    bar_seconds: float
    #: the best any poller can do at this rate: a change waits U(0, floor) for its page's next read
    ideal_p50: float
    ideal_p99: float
    measured: bool
    note: str = ""
    #: the poller's max_staleness where the scenario restarts finished entities (their bar)
    max_staleness: float | None = None
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
    #: core NATS publish (no ack) of the same messages: the client's ceiling
    core: Throughput | None = None


class PushResult(msgspec.Struct, frozen=True, kw_only=True):
    calls: int
    drop_fraction: float
    pushed: int
    dropped: int
    #: seconds from a push being sent to its event reaching a subscriber
    push_p50: float | None
    push_p99: float | None
    #: dropped pushes whose call still reached the subscriber (by polling), and how long it took
    reconciled: int
    reconciled_p99: float | None
    poll_interval: float


class ClusterPublish(msgspec.Struct, frozen=True, kw_only=True):
    """Our Publisher into an R3 stream beside the same into a single server's R1 stream."""

    events: int
    single: Throughput
    #: the client connected to a server that is not the stream's leader (acks cross a route)
    r3_follower: Throughput
    r3_leader: Throughput


class FailoverKill(msgspec.Struct, frozen=True, kw_only=True):
    """One SIGKILL of the stream leader while the Publisher publishes at a steady rate."""

    leader: str
    #: was the Publisher's connection on the killed server (it had to reconnect as well)
    client_on_leader: bool
    #: kill → the first ack of a publish our Publisher sent after the kill
    seconds: float | None
    #: kill → the first ack of a probe publish sent after the kill (the cluster's own recovery)
    probe_seconds: float | None
    new_leader: str


class FailoverResult(msgspec.Struct, frozen=True, kw_only=True):
    kills: list[FailoverKill]
    #: events/s offered, in publishes of ``batch`` events
    rate: float
    batch: int
    ack_timeout: float
    #: events whose publish returned (every one acked)
    published: int
    #: distinct message ids of those events read back from the stream
    stored: int
    lost: int
    doubled: int
    #: ids in the stream that were never published (none can be)
    unexpected: int
    #: publishes retried after a timeout or an error, and retries acked as duplicates
    retries: int
    duplicate_acks: int
    #: the Publisher's failed publishes by kind (an ack timeout, or the error's class)
    failures: dict[str, int] = {}
    #: events the old leader had acked, sent again after each kill (a retry whose ack was lost),
    #: and how many the new leader acked as duplicates (all of them, if de-duplication held)
    resent: int = 0
    resent_duplicates: int = 0


class ReplicaShare(msgspec.Struct, frozen=True, kw_only=True):
    replica: str
    #: the accounts whose requests came through this replica's port in the steady window
    accounts: list[str]
    requests: int
    per_second: float
    #: the process's user and system CPU seconds over the window, where ``/proc`` tells them
    cpu: tuple[float, float] | None = None

    @property
    def cpu_seconds(self) -> float | None:
        return None if self.cpu is None else self.cpu[0] + self.cpu[1]


class ReplicasResult(msgspec.Struct, frozen=True, kw_only=True):
    """Poller processes sharing accounts by leases, read from the simulator's request log."""

    replicas: list[ReplicaShare]
    window_seconds: float
    fleet_per_second: float
    #: accounts requested through two replicas within the steady window
    shared_accounts: int
    #: accounts not polled by exactly the replica rendezvous hashing names (in the steady window)
    off_split: int
    #: the most requests of one (API, credential) in any one-second window, over the whole run
    max_in_window: int
    limit: int
    throttled: int
    killed: str
    killed_accounts: list[str]
    #: per killed account: SIGKILL → its first request through another replica
    takeover_each: list[float]
    takeover_seconds: float | None
    #: lease TTL + one membership refresh + the hand-over window (docs/scaling.md)
    takeover_bound: float
    lease_ttl: float
    #: task changes made in the simulator during the run, and how the stream holds them
    changes: int
    lost: int
    doubled: int


class ClusterResult(msgspec.Struct, frozen=True, kw_only=True):
    servers: int
    publish: ClusterPublish
    failover: FailoverResult
    replicas: ReplicasResult


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
    cluster: ClusterResult | None = None


@dataclass
class Outcome:
    """The results plus what is kept out of the JSON: each run's request arrival times."""

    results: Results
    #: run label → (limit, arrival times of every request the simulator saw)
    arrivals: dict[str, tuple[int, list[float]]] = field(default_factory=dict)
