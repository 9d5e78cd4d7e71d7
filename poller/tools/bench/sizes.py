"""The benchmark's fixed names, sizes and the bars it holds the poller to."""

from __future__ import annotations

from pathlib import Path

import msgspec

from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy

__all__ = [
    "ACCOUNT",
    "APP",
    "BYTES_PER_ENTITY_TARGET",
    "DECODE_DIFF_TARGET",
    "FIRST_TASK_ID",
    "FULL",
    "LATENCY_FACTOR",
    "LIMIT_USE_TARGET",
    "MEMORY_BUCKET",
    "MEMORY_KEY",
    "OURS_PREFIX",
    "PACKAGE_ROOT",
    "PLAIN_PREFIX",
    "PRIVACY",
    "PUBLISH_TARGET",
    "QUICK",
    "R3_PUBLISH_TARGET",
    "SECRET_ID",
    "SECRET_KEY",
    "SOURCE",
    "Sizes",
]

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

# the performance bars (docs/performance.md)
LIMIT_USE_TARGET = 0.97
LATENCY_FACTOR = 1.2
#: with reads that follow what can change: p99 within this share of the full-sweep floor
TARGETED_LATENCY_FACTOR = 0.3
DECODE_DIFF_TARGET = 200_000.0
PUBLISH_TARGET = 40_000.0
#: acked publishing over core NATS publishing of the same messages (the client's ceiling)
PUBLISH_VS_CORE_TARGET = 0.5
BYTES_PER_ENTITY_TARGET = 300.0
#: events/s into an R3 stream: the worked example's business-hours peak (docs/scaling.md)
R3_PUBLISH_TARGET = 1_200.0


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
    #: finished entities restarted in each run of a scenario that follows what can change
    restarts: int = 30
    #: the push row: calls placed (half their pushes dropped) and at what rate
    push_calls: int = 600
    push_per_second: float = 20.0
    push_poll_interval: float = 2.0
    #: the cluster row: events per publish run (each repeated), through R3 and a single server
    cluster_publish_events: int = 20_000
    cluster_publish_repeats: int = 3
    #: interleaved repeats of ours and core publishing (the median of each is reported)
    publish_repeats: int = 3
    #: stream-leader kills while the Publisher publishes at this rate, in publishes of a batch
    cluster_kills: int = 3
    cluster_failover_rate: float = 500.0
    cluster_failover_batch: int = 25
    #: poller processes, the accounts they share (tasks each) and their lease TTL (the default)
    cluster_replicas: int = 3
    cluster_accounts: int = 6
    cluster_tasks: int = 4
    cluster_lease_ttl: float = 15.0
    #: how long the split is measured before a replica is killed
    cluster_steady_seconds: float = 10.0


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
    restarts=3,
    push_calls=40,
    push_per_second=40.0,
    push_poll_interval=1.0,
    cluster_publish_events=1_000,
    cluster_publish_repeats=1,
    cluster_kills=1,
    cluster_failover_rate=200.0,
    cluster_failover_batch=10,
    cluster_replicas=2,
    cluster_accounts=3,
    cluster_tasks=2,
    cluster_lease_ttl=3.0,
    cluster_steady_seconds=2.0,
)
