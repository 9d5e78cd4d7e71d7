"""A real three-server NATS cluster with routes and R3 JetStream, and poller replicas on it."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import anyio
import msgspec
import nats
import pytest

from poller.config import Config
from poller.simulators.base import max_in_window
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsCluster
from schemas import TaskAppeared, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events, wait_until

APP = 1400000001
LIMIT = 20


@pytest.fixture
async def cluster() -> AsyncIterator[NatsCluster]:
    with NatsCluster() as started:
        await started.wait_for_jetstream()
        yield started


def _nats(cluster: NatsCluster) -> dict[str, object]:
    return {"servers": cluster.urls, "replicas": 3, "ack_timeout": 2.0}


async def _stream_leader(cluster: NatsCluster) -> str:
    nc = await nats.connect(servers=cluster.urls)
    try:
        info = await nc.jetstream().stream_info("AICC")
        assert info.cluster is not None and info.cluster.leader
        return str(info.cluster.leader)
    finally:
        await nc.close()


def _exactly_once(events: list[object], expected: list[tuple[str, str]]) -> None:
    changes = [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    assert sorted(changes) == sorted(expected), "every change once: none lost, none doubled"
    seqs = [(e.entity_id, e.seq) for e in events if hasattr(e, "seq")]
    assert len(seqs) == len(set(seqs))


@pytest.mark.slow
async def test_killing_the_stream_leader_loses_and_doubles_nothing(cluster: NatsCluster) -> None:
    async with TencentCccSimulator(credentials={"AKIDc": "kc"}, seed=21) as sim:
        tasks = [sim.add_task(APP, state=0) for _ in range(6)]
        source = {
            "vendor": "tencent-ccc",
            "account": "c",
            "secret_id": "AKIDc",
            "secret_key": "kc",
            "sdk_app_ids": [APP],
            "endpoint": sim.url,
            "poll_interval": 0.05,
            "retries": 1,
            "failure_backoff": 0.2,
        }
        config = make_config(cluster.urls[0], [source], nats=_nats(cluster), shutdown_grace=5.0)
        rng = random.Random(5)
        expected: list[tuple[str, str]] = []
        state = dict.fromkeys(tasks, 0)
        killed = None
        async with running(config) as service:
            await polls_done(service, 1)
            for step in range(12):
                task = rng.choice(tasks)
                state[task] = {0: 1, 1: 5, 5: 1}[state[task] if state[task] in (0, 1, 5) else 1]
                sim.set_state(APP, task, state[task])
                expected.append((str(task), str(state[task])))
                if step == 4:
                    killed = cluster.by_name(await _stream_leader(cluster))
                    killed.kill()
                if step == 8 and killed is not None:
                    killed.start()
                await polls_done(service, 2)
    assert killed is not None
    events = await stream_events(cluster.urls[[s is killed for s in cluster.servers].index(False)])
    _exactly_once(events, expected)
    assert sorted(e.entity_id for e in events if isinstance(e, TaskAppeared)) == sorted(map(str, tasks))


@pytest.mark.slow
async def test_scaling_two_three_two_replicas_keeps_every_limit_and_every_change(
    cluster: NatsCluster,
) -> None:
    accounts = [f"s{i}" for i in range(6)]
    credentials = {f"AKID{a}": f"k{a}" for a in accounts}
    async with TencentCccSimulator(credentials=credentials, seed=22) as sim:
        tasks = {a: sim.add_task(APP + i, state=0) for i, a in enumerate(accounts)}
        sources = [
            {
                "vendor": "tencent-ccc",
                "account": a,
                "secret_id": f"AKID{a}",
                "secret_key": f"k{a}",
                "sdk_app_ids": [APP + i],
                "endpoint": sim.url,
                "poll_interval": 0.001,
                "rate_limit_margin": 0.1,  # a loaded machine delays arrivals: the test is about owners
                "retries": 1,
                "failure_backoff": 0.2,
            }
            for i, a in enumerate(accounts)
        ]
        config = make_config(cluster.urls[0], sources, nats=_nats(cluster), coordination={"lease_ttl": 5.0})
        expected: list[tuple[str, str]] = []
        state = dict.fromkeys(accounts, 0)

        def change() -> None:
            # round robin: one account changes every few seconds, longer than a hand-over's pause,
            # so no change can be overwritten before some owner polls it
            account = accounts[len(expected) % len(accounts)]
            state[account] = 5 if state[account] == 1 else 1
            sim.set_state(APP + accounts.index(account), tasks[account], state[account])
            expected.append((str(tasks[account]), str(state[account])))

        def owned(*services: object) -> set[str]:
            return {s.source.account for svc in services for s in svc.statuses.values() if s.owned}  # type: ignore[attr-defined]

        async def churn(seconds: float) -> None:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                change()
                await anyio.sleep(0.8)

        # fixed ids: rendezvous hashing splits the six accounts 2/4 between two and 2/2/2 between three
        def replica(name: str) -> Config:
            return msgspec.structs.replace(
                config, coordination=msgspec.structs.replace(config.coordination, replica_id=name)
            )

        async with running(replica("replica-a")) as a, running(replica("replica-b")) as b:
            await wait_until(
                lambda: owned(a, b) == set(accounts) and bool(owned(b)) and bool(owned(a)), timeout=30
            )
            await churn(3)
            async with running(replica("replica-c")) as c:
                await wait_until(lambda: bool(owned(c)) and owned(a, b, c) == set(accounts), timeout=30)
                await churn(3)
            # c stopped: a and b take its accounts back
            await wait_until(lambda: owned(a, b) == set(accounts), timeout=30)
            await churn(3)
            await anyio.sleep(2.0)  # the last change is seen by whoever owns it now
    for account in accounts:
        for api in {r.api for r in sim.log.records}:  # each API has its own limit per credential
            assert max_in_window(sim.log.times(api=api, credential=f"AKID{account}")) <= LIMIT, (account, api)
    assert sim.log.count("throttled") == 0
    events = await stream_events(cluster.urls[0])
    # the same entity may only be changed and then changed back: each change is its own event
    _exactly_once(events, expected)
