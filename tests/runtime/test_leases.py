"""Ownership by leases on a real nats-server: replicas share the accounts without configuration,
hand them over on stop, and take a killed replica's accounts after the lease TTL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import nats

from poller.config import CoordinationConfig
from poller.runtime.connection import ensure_coordination
from poller.runtime.leases import HANDOVER_WINDOW, Ownership, rendezvous_owner
from poller.simulators.base import max_in_window
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import TaskAppeared, TaskStatusChanged
from tests.helpers import make_config, running, stream_events, wait_until

APP = 1400000001
ACCOUNTS = [f"acct{i}" for i in range(6)]
LIMIT = 20  # DescribeAutoCalloutTasks, per credential


def _sources(sim: TencentCccSimulator) -> list[dict[str, object]]:
    return [
        {
            "vendor": "tencent-ccc",
            "account": account,
            "secret_id": f"AKID{account}",
            "secret_key": f"key-{account}",
            "sdk_app_ids": [APP + i],
            "endpoint": sim.url,
            "poll_interval": 0.001,  # back to back: two owners of one credential would exceed its limit
            "rate_limit_margin": 0.1,  # a loaded machine delays arrivals: the test is about owners
            "retries": 1,
            "failure_backoff": 0.2,
        }
        for i, account in enumerate(ACCOUNTS)
    ]


ROOT = Path(__file__).resolve().parents[2]


def _start_poller(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _owned(service: object) -> set[str]:
    return {s.source.account for s in service.statuses.values() if s.owned}  # type: ignore[attr-defined]


def test_rendezvous_moves_only_the_accounts_of_the_replica_that_left() -> None:
    keys = [f"tencent-ccc.a{i}" for i in range(300)]
    three = {k: rendezvous_owner(k, {"r1", "r2", "r3"}) for k in keys}
    two = {k: rendezvous_owner(k, {"r1", "r2"}) for k in keys}
    assert all(two[k] == three[k] for k in keys if three[k] != "r3")
    counts = [list(three.values()).count(r) for r in ("r1", "r2", "r3")]
    assert min(counts) > 60, counts  # spread about evenly


async def test_two_replicas_split_the_accounts_and_hand_them_over_on_stop(nats_server: NatsServer) -> None:
    credentials = {f"AKID{a}": f"key-{a}" for a in ACCOUNTS}
    async with TencentCccSimulator(credentials=credentials, seed=11) as sim:
        tasks = {a: sim.add_task(APP + i, state=0) for i, a in enumerate(ACCOUNTS)}
        # fixed ids: rendezvous hashing then splits these six accounts 4/2 (random ids could give 6/0)
        config = make_config(
            nats_server.url, _sources(sim), coordination={"lease_ttl": 5.0, "replica_id": "r-1"}
        )
        other = make_config(
            nats_server.url, _sources(sim), coordination={"lease_ttl": 5.0, "replica_id": "r-2"}
        )
        async with running(config) as first:
            async with running(other) as second:
                # the second joins: the first hands over the accounts rendezvous hashing gives it
                await wait_until(
                    lambda: bool(_owned(second)) and _owned(first) | _owned(second) == set(ACCOUNTS),
                    timeout=30,
                )
                await anyio.sleep(1.0)
                assert not _owned(first) & _owned(second), "an account polled by two replicas"
                assert _owned(first) and _owned(second), "the accounts are spread"
                moved = _owned(second)
                for i, account in enumerate(ACCOUNTS):
                    sim.set_state(APP + i, tasks[account], 1)
                await anyio.sleep(0.5)
            # the second stopped: its accounts move to the first, one window after their release
            handed_over_at = time.monotonic()
            await wait_until(lambda: _owned(first) == set(ACCOUNTS), timeout=30)
            took = time.monotonic() - handed_over_at
            for i, account in enumerate(ACCOUNTS):
                sim.set_state(APP + i, tasks[account], 2)
            await wait_until(
                lambda: all(s.last_success is not None for s in first.statuses.values()), timeout=10
            )
            await anyio.sleep(1.0)
    assert moved and took < 8, took
    for account in ACCOUNTS:
        for api in {r.api for r in sim.log.records}:  # each API has its own limit per credential
            times = sim.log.times(api=api, credential=f"AKID{account}")
            assert max_in_window(times) <= LIMIT, (account, api, max_in_window(times))
    assert sim.log.count("throttled") == 0
    events = await stream_events(nats_server.url)
    changes = [(e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    appeared = [e.entity_id for e in events if isinstance(e, TaskAppeared)]
    assert sorted(appeared) == sorted(str(t) for t in tasks.values())  # 0 doubled
    assert sorted(changes) == sorted(
        [(str(t), "1") for t in tasks.values()] + [(str(t), "2") for t in tasks.values()]
    )


async def test_a_killed_replicas_accounts_resume_elsewhere_within_the_ttl(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    credentials = {f"AKID{a}": f"key-{a}" for a in ACCOUNTS}
    async with TencentCccSimulator(credentials=credentials, seed=12) as sim:
        for i, _ in enumerate(ACCOUNTS):
            sim.add_task(APP + i, state=0)
        lines = [
            "shutdown_grace = 2",
            "[nats]",
            f'url = "{nats_server.url}"',
            "[http]",
            "enabled = false",
            "[coordination]",
            "lease_ttl = 5.0",
            'replica_id = "doomed"',
        ]
        for source in _sources(sim):
            lines.append("[[sources]]")
            lines += [
                f"{k} = {v!r}".replace("'", '"') if not isinstance(v, list) else f"{k} = {v}"
                for k, v in source.items()
            ]
        path = tmp_path / "poller.toml"
        path.write_text("\n".join(lines) + "\n")
        poller = _start_poller(path)
        try:
            # "doomed" and "r-1" split the six accounts 1/5: the killed one surely owned something
            config = make_config(
                nats_server.url, _sources(sim), coordination={"lease_ttl": 5.0, "replica_id": "r-1"}
            )
            async with running(config) as survivor:
                # a subprocess on a loaded machine may take a while to import and join
                await wait_until(lambda: len(_owned(survivor)) >= 1, timeout=45)
                await wait_until(lambda: len(_owned(survivor)) < len(ACCOUNTS), timeout=45)
                poller.send_signal(signal.SIGKILL)
                poller.wait(5)
                killed_at = time.monotonic()
                await wait_until(lambda: _owned(survivor) == set(ACCOUNTS), timeout=30)
                took = time.monotonic() - killed_at
        finally:
            if poller.poll() is None:
                poller.kill()
    assert took <= 5.0 + 6.0, took  # the TTL, one refresh, the hand-over window and a loaded machine


async def test_a_lease_nats_stops_renewing_is_let_go_a_window_and_more_before_it_can_expire(
    nats_server: NatsServer,
) -> None:
    """NATS stalls (SIGSTOP): every renewal hangs. The owner must stop at its fence, not when a
    renewal finally fails, so its last requests have left the vendor's window before the lease
    expires and another replica may take it."""
    ttl = 3.0
    nc = await nats.connect(nats_server.url, allow_reconnect=False)
    assert nats_server.process is not None
    try:
        members, leases = await ensure_coordination(nc.jetstream(), CoordinationConfig(lease_ttl=ttl), 1)
        owner = Ownership(members, leases, "owner", ttl)
        assert await owner.hold("tencent-ccc.a") is not None
        held_at = time.monotonic()
        lost = owner.lost("tencent-ccc.a")
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner.keep_leases)
            await anyio.sleep(owner.refresh_every * 1.2)  # one renewal made
            assert not lost.is_set()
            renewed = owner._held["tencent-ccc.a"].renewed  # when the last write that landed began
            assert renewed > held_at
            os.kill(nats_server.process.pid, signal.SIGSTOP)
            try:
                with anyio.fail_after(ttl):
                    await lost.wait()
                lost_at = time.monotonic()
            finally:
                os.kill(nats_server.process.pid, signal.SIGCONT)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
    # the lease can expire a TTL after that write: the owner stopped a hand-over window before
    assert lost_at <= renewed + ttl - HANDOVER_WINDOW, lost_at - renewed
