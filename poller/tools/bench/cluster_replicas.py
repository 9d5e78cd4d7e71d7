"""Poller processes sharing accounts by leases on the cluster, seen from the vendor's side.

Each replica is a real ``poller run`` process, given the same accounts but its own port of one
Tencent simulator, so the simulator's request log says which replica sent each request. From that
log alone: each replica's and the fleet's requests/s over a steady window, that every account is
polled by one replica (the one rendezvous hashing names), and that no (API, credential) exceeds its
limit in any second of the run. Then one replica is SIGKILLed: how long until each of its accounts
is requested through another replica (its lease expires, a survivor takes it). Tasks change at a
steady rate all along, each too rarely to change twice while its account waits for a new owner,
and the stream must hold every change exactly once.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec
import nats
from anyio.abc import Process

from poller.config import parse_config
from poller.ops.configview import to_toml
from poller.runtime.leases import HANDOVER_WINDOW, rendezvous_owner
from poller.simulators.base import RequestRecord, max_in_window
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.bench.child import child_env
from poller.tools.bench.progress import Progress
from poller.tools.bench.readback import stream_messages
from poller.tools.bench.results import ReplicaShare, ReplicasResult
from poller.tools.bench.sizes import Sizes
from poller.tools.natsserver import NatsCluster
from schemas import Event, TaskAppeared, TaskStatusChanged

__all__ = ["bench_replicas"]

FIRST_APP = 1400000100
LIMIT = 20  # the simulator's per-credential limit of each Tencent API
#: how long a credential must be requested through its rendezvous owner alone to call the split settled
SETTLED_FOR = 2.0
#: seconds after the last change for every owner to see it and publish it
SETTLE = 3.0
#: the replicas' rate-limit margin: wider than the default, for the loaded machine's stamping jitter
MARGIN = 0.1


def _credential(account: str) -> str:
    return f"AKIDcluster{account}"


def _balanced_accounts(count: int, replicas: list[str]) -> list[str]:
    """The first account names rendezvous hashing spreads evenly: every replica has some to lose."""
    per_replica = math.ceil(count / len(replicas))
    taken: Counter[str] = Counter()
    names: list[str] = []
    i = 0
    while len(names) < count:
        name = f"c{i}"
        owner = rendezvous_owner(f"tencent-ccc.{name}", set(replicas))
        if taken[owner] < per_replica:
            taken[owner] += 1
            names.append(name)
        i += 1
    return names


def _config(
    cluster: NatsCluster, replica: str, endpoint: str, accounts: list[str], sizes: Sizes
) -> dict[str, Any]:
    return {
        "shutdown_grace": 2.0,
        "nats": {"url": cluster.urls[0], "servers": cluster.urls, "replicas": 3},
        "http": {"enabled": False},
        "logging": {"level": "WARNING"},
        "coordination": {"lease_ttl": sizes.cluster_lease_ttl, "replica_id": replica},
        "sources": [
            {
                "vendor": "tencent-ccc",
                "account": account,
                "secret_id": _credential(account),
                "secret_key": f"key-{account}",
                "sdk_app_ids": [FIRST_APP + i],
                "endpoint": endpoint,
                # back to back: two replicas polling one credential would exceed its limit
                "poll_interval": 0.001,
                # as in the cluster tests: the concern here is who polls, and on a loaded machine the
                # simulator stamps arrivals late now and then (the latency part measures the margin)
                "rate_limit_margin": MARGIN,
                "retries": 1,
                "failure_backoff": 0.2,
            }
            for i, account in enumerate(accounts)
        ],
    }


async def _start(config: dict[str, Any], folder: Path, replica: str) -> tuple[Process, Path, IO[bytes]]:
    parse_config(config, path=f"<{replica}>", env={})  # a mistake here is ours: say so before starting
    path = folder / f"{replica}.toml"
    path.write_text(to_toml(config))
    log_path = folder / f"{replica}.log"
    log_file = log_path.open("wb")
    command = [sys.executable, "-P", "-m", "poller.cli", "run", "--config", str(path)]
    process = await anyio.open_process(command, stdin=None, stdout=log_file, stderr=log_file, env=child_env())
    return process, log_path, log_file


def _owners_now(records: list[RequestRecord], since: float) -> dict[str, set[int]]:
    """credential → the ports it was requested through since ``since``."""
    seen: dict[str, set[int]] = defaultdict(set)
    for record in reversed(records):
        if record.at < since:
            break
        seen[record.credential].add(record.via)
    return seen


async def _until_settled(
    sim: TencentCccSimulator, expected: dict[str, int], processes: list[tuple[str, Process, Path]]
) -> float:
    """Until every credential is requested through its rendezvous owner's port alone."""
    deadline = time.monotonic() + 120
    while True:
        _alive(processes)
        now = time.monotonic()
        seen = _owners_now(sim.log.records, now - SETTLED_FOR)
        if all(seen.get(credential) == {port} for credential, port in expected.items()):
            return now
        if now > deadline:
            raise RuntimeError(f"the replicas never settled on the hashed split: {dict(seen)}")
        await anyio.sleep(0.2)


def _cpu_seconds(pid: int) -> tuple[float, float] | None:
    """User and system CPU time of a process so far, from ``/proc`` (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # proc(5): utime and stime, in clock ticks, counted from the state (the field after the name)
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _spent(start: tuple[float, float] | None, end: tuple[float, float] | None) -> tuple[float, float] | None:
    if start is None or end is None:
        return None
    return round(end[0] - start[0], 3), round(end[1] - start[1], 3)


def _alive(processes: list[tuple[str, Process, Path]]) -> None:
    for replica, process, log_path in processes:
        if process.returncode is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"replica {replica} exited with {process.returncode}:\n{tail}")


async def _stream_events(urls: list[str]) -> list[Event]:
    nc = await nats.connect(servers=urls)
    try:
        messages = await stream_messages(nc.jetstream(timeout=10), "AICC", "aicc.>")
    finally:
        await nc.close()
    decode = msgspec.json.Decoder(Event).decode
    return [decode(data) for _, data in messages if data]


async def bench_replicas(
    cluster: NatsCluster,
    sizes: Sizes,
    seed: int,
    progress: Progress,
    arrivals: dict[str, tuple[int, list[float]]] | None = None,
) -> ReplicasResult:
    """``arrivals`` gets the simulator's arrival times per (API, credential), for the tests' own proof."""
    replica_ids = [f"replica-{i + 1}" for i in range(sizes.cluster_replicas)]
    accounts = _balanced_accounts(sizes.cluster_accounts, replica_ids)
    credentials = {_credential(a): f"key-{a}" for a in accounts}
    ttl = sizes.cluster_lease_ttl
    bound = ttl + min(ttl / 3, 2.0) + HANDOVER_WINDOW
    sim = TencentCccSimulator(credentials=credentials, seed=seed, rate_limit=LIMIT)
    expected_changes: list[tuple[str, str]] = []
    async with sim:
        tasks = [
            (FIRST_APP + i, sim.add_task(FIRST_APP + i, state=0))
            for i, _ in enumerate(accounts)
            for _ in range(sizes.cluster_tasks)
        ]
        # each task changes at most once while its account can wait for a new owner
        change_every = (bound + SETTLE) / len(tasks)
        ports = {replica: await sim.listen_also() for replica in replica_ids}
        port_of = {port: replica for replica, port in ports.items()}
        hashed = {a: rendezvous_owner(f"tencent-ccc.{a}", set(replica_ids)) for a in accounts}
        state = {task: 0 for _, task in tasks}

        async def change_steadily(stop: anyio.Event) -> None:
            i = 0
            while not stop.is_set():
                app, task = tasks[i % len(tasks)]
                state[task] = 5 if state[task] == 1 else 1
                sim.set_state(app, task, state[task])
                expected_changes.append((str(task), str(state[task])))
                i += 1
                await anyio.sleep(change_every)

        with tempfile.TemporaryDirectory(prefix="aicc-bench-replicas-") as tmp:
            folder = Path(tmp)
            running: list[tuple[str, Process, Path]] = []
            files: list[IO[bytes]] = []
            try:
                for replica in replica_ids:
                    config = _config(cluster, replica, f"http://127.0.0.1:{ports[replica]}", accounts, sizes)
                    process, log_path, log_file = await _start(config, folder, replica)
                    running.append((replica, process, log_path))
                    files.append(log_file)
                progress(
                    f"cluster: {len(replica_ids)} poller processes, {len(accounts)} accounts polled back to "
                    f"back at {LIMIT} req/s per credential, lease TTL {ttl:g} s"
                )
                expected_ports = {_credential(a): ports[hashed[a]] for a in accounts}
                window_start = await _until_settled(sim, expected_ports, running)
                cpu_start = {replica: _cpu_seconds(process.pid) for replica, process, _ in running}
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(change_steadily, stop)
                    await anyio.sleep(sizes.cluster_steady_seconds)
                    _alive(running)
                    window_end = time.monotonic()
                    cpu_end = {replica: _cpu_seconds(process.pid) for replica, process, _ in running}
                    counts = Counter(hashed.values())
                    victim = max(replica_ids, key=lambda r: (counts[r], r))
                    _, process, _ = next(entry for entry in running if entry[0] == victim)
                    killed_at = time.monotonic()
                    process.send_signal(signal.SIGKILL)
                    await process.wait()
                    running = [entry for entry in running if entry[0] != victim]
                    lost_accounts = [a for a in accounts if hashed[a] == victim]
                    takeover = await _until_taken_over(
                        sim, [_credential(a) for a in lost_accounts], ports[victim], killed_at, bound
                    )
                    progress(
                        f"cluster: {victim} SIGKILLed; its {len(lost_accounts)} accounts polled again by "
                        f"the others after {', '.join(f'{t:.2f}' for t in takeover)} s (bound {bound:.2f} s)"
                    )
                    await anyio.sleep(SETTLE)
                    stop.set()
                await anyio.sleep(SETTLE)  # the last change is seen and published
                for _, process, _ in running:
                    process.send_signal(signal.SIGTERM)
                with anyio.move_on_after(30):
                    for _, process, _ in running:
                        await process.wait()
            finally:
                for _, process, _ in running:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                for file in files:
                    file.close()
    records = sim.log.records
    in_window = [r for r in records if window_start <= r.at <= window_end]
    seconds = window_end - window_start
    shares = []
    for replica in replica_ids:
        mine = [r for r in in_window if r.via == ports[replica]]
        shares.append(
            ReplicaShare(
                replica=replica,
                accounts=sorted(a for a in accounts if any(r.credential == _credential(a) for r in mine)),
                requests=len(mine),
                per_second=round(len(mine) / seconds, 1),
                cpu=_spent(cpu_start[replica], cpu_end[replica]),
            )
        )
    through: dict[str, set[str]] = defaultdict(set)
    for r in in_window:
        through[r.credential].add(port_of.get(r.via, "?"))
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        times[(r.api, r.credential)].append(r.at)
    if arrivals is not None:
        arrivals.update({f"cluster {api} {credential}": (LIMIT, t) for (api, credential), t in times.items()})
    worst = max(max_in_window(t) for t in times.values())
    events = await _stream_events(cluster.urls)
    lost, doubled = _compare(events, expected_changes, [str(task) for _, task in tasks])
    result = ReplicasResult(
        replicas=shares,
        window_seconds=round(seconds, 2),
        fleet_per_second=round(len(in_window) / seconds, 1),
        shared_accounts=sum(1 for used in through.values() if len(used) > 1),
        off_split=sum(1 for a in accounts if through.get(_credential(a)) != {hashed[a]}),
        max_in_window=worst,
        limit=LIMIT,
        throttled=sim.log.count("throttled"),
        killed=victim,
        killed_accounts=lost_accounts,
        takeover_each=[round(t, 3) for t in takeover],
        takeover_seconds=round(max(takeover), 3) if len(takeover) == len(lost_accounts) else None,
        takeover_bound=round(bound, 3),
        lease_ttl=ttl,
        changes=len(expected_changes),
        lost=lost,
        doubled=doubled,
    )
    progress(
        "cluster: "
        + "; ".join(f"{s.replica} {s.per_second:g} req/s over {len(s.accounts)} accounts" for s in shares)
        + f"; fleet {result.fleet_per_second:g} req/s; worst second {worst}/{LIMIT}, "
        f"{result.throttled} throttled; {result.changes} changes: {lost} lost, {doubled} doubled"
    )
    return result


async def _until_taken_over(
    sim: TencentCccSimulator, credentials: list[str], dead_port: int, killed_at: float, bound: float
) -> list[float]:
    """Per credential: the kill → its first request through another port (waits up to twice the bound)."""
    deadline = killed_at + 2 * bound + 10
    taken: dict[str, float] = {}
    checked = 0
    while len(taken) < len(credentials) and time.monotonic() < deadline:
        records = sim.log.records
        for record in records[checked:]:
            if (
                record.at >= killed_at
                and record.via != dead_port
                and record.credential in credentials
                and record.credential not in taken
            ):
                taken[record.credential] = record.at - killed_at
        checked = len(records)
        await anyio.sleep(0.05)
    return [taken[c] for c in credentials if c in taken]


def _compare(events: list[Event], expected: list[tuple[str, str]], tasks: list[str]) -> tuple[int, int]:
    """Lost and doubled: each change and each task's appearance once, compared as multisets."""
    seen = Counter(
        (e.entity_id, e.current.raw) for e in events if isinstance(e, TaskStatusChanged) and e.current.raw
    )
    seen.update(("appeared", e.entity_id) for e in events if isinstance(e, TaskAppeared))
    want = Counter(expected)
    want.update(("appeared", task) for task in tasks)
    return sum((want - seen).values()), sum((seen - want).values())
