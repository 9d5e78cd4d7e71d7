"""The cluster part at tiny size: what must hold on any machine, whatever the timings.

Leader elections and lease expiry take the same seconds at any size, so this part is left out of
the quick default and runs here on its own (``poller bench --quick --only cluster``). Asserted: the
stream read back after a leader kill holds every acked event once (and the new leader acks a re-sent
one as a duplicate), poller processes split the
accounts as rendezvous hashing says and never spend one credential twice (proved from the
simulator's own arrival log), a killed replica's accounts are polled again, and every task change
made meanwhile is in the stream once.
"""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pytest

from poller.simulators.base import max_in_window
from poller.tools import bench

KEYS = (
    "r3_publish",
    "r3_publish_leader",
    "r3_vs_single",
    "failover_p50",
    "failover_max",
    "lost",
    "doubled",
    "dedup_after_failover",
    "requests_per_replica",
    "requests_fleet",
    "max_in_window",
    "throttled",
    "takeover_seconds",
    "takeover_lost",
    "takeover_doubled",
)


@pytest.mark.slow
def test_quick_cluster_part_loses_nothing_doubles_nothing_and_keeps_every_limit(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    table = io.StringIO()
    outcome = bench.run_cli(["--quick", "--only", "cluster", "--json", str(path)], out=table)
    results = msgspec.json.decode(path.read_bytes(), type=bench.Results)
    assert results == outcome.results
    cluster = results.cluster
    assert cluster is not None and cluster.servers == 3
    figures = {f.key: f for f in results.figures}
    for key in KEYS:
        assert figures[f"cluster.{key}"].ours is not None, key
        assert figures[f"cluster.{key}"].label in table.getvalue()

    publish = cluster.publish
    for throughput in (publish.single, publish.r3_follower, publish.r3_leader):
        assert throughput.items == bench.QUICK.cluster_publish_events and throughput.per_second > 0

    # every kill was followed by a new leader and acks again; the stream holds each event once
    failover = cluster.failover
    assert len(failover.kills) == bench.QUICK.cluster_kills
    for kill in failover.kills:
        assert kill.seconds is not None and kill.new_leader != kill.leader
    assert failover.published > 0 and failover.stored == failover.published
    assert failover.lost == failover.doubled == failover.unexpected == 0
    # events the old leader had acked, sent again as a retry would be: the new leader knows their ids
    assert failover.resent > 0 and failover.resent_duplicates == failover.resent

    # the replicas: the hashed split, no account polled by two, every limit held in every second
    replicas = cluster.replicas
    assert len(replicas.replicas) == bench.QUICK.cluster_replicas
    owned = [a for share in replicas.replicas for a in share.accounts]
    assert len(owned) == len(set(owned)) == bench.QUICK.cluster_accounts
    assert all(share.accounts and share.requests > 0 for share in replicas.replicas)
    assert replicas.shared_accounts == replicas.off_split == replicas.throttled == 0
    ours = {label: log for label, log in outcome.arrivals.items() if label.startswith("cluster ")}
    assert ours
    for label, (limit, arrivals) in ours.items():
        assert max_in_window(arrivals) <= limit, label
    assert replicas.max_in_window <= replicas.limit

    # the killed replica's accounts were taken over, and no change was lost or doubled meanwhile
    assert replicas.killed_accounts and len(replicas.takeover_each) == len(replicas.killed_accounts)
    assert replicas.takeover_seconds is not None
    assert replicas.changes > 0 and replicas.lost == replicas.doubled == 0


def test_the_quick_default_leaves_the_cluster_part_out() -> None:
    assert "cluster" in bench.PARTS and "cluster" not in bench.QUICK_PARTS
    assert set(bench.QUICK_PARTS) | {"cluster"} == set(bench.PARTS)
