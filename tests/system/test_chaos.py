"""Chaos: the poller SIGKILLed and nats-server killed and restarted at random points while the vendors'
worlds evolve on a recorded script. At the end, what a subscriber got must be exactly the real
history, with only the documented collapses: a state that began and ended while the poller or NATS
was down (or within the catch-up second after) may be missing. Zero duplicate event ids."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from poller.simulators.alibaba_aiccs import NEXT_STATUSES as AICCS_NEXT
from poller.simulators.alibaba_aiccs import AiccsSimulator
from poller.simulators.alibaba_outboundbot import NEXT_STATUSES as OUTBOUNDBOT_NEXT
from poller.simulators.alibaba_outboundbot import OutboundBotSimulator
from poller.simulators.byrobot import ByRobotSimulator
from poller.simulators.huawei_aicc import NEXT_STATUS as HUAWEI_NEXT
from poller.simulators.huawei_aicc import HuaweiAiccSimulator
from poller.simulators.tencent_ccc import NEXT_STATES, TencentCccSimulator
from poller.tools.natsserver import NatsServer, free_port
from schemas import CallFinished, EntityKind, JobStatusChanged, TaskAppeared, TaskProgress, TaskStatusChanged
from schemas.events import EntityEvent
from tests.helpers import stream_events, wait_until

Tracked = TaskAppeared | TaskStatusChanged | JobStatusChanged

CATCH_UP = 1.0
#: poll_interval (0.1 s) plus a sweep's own requests and publish on a loaded 2-core machine
ONE_CYCLE = 0.4
SECRETS = {
    "CHAOS_TC_SECRET": "chaos-tc-secret",
    "CHAOS_HW_SECRET": "chaos-hw-secret",
    "CHAOS_OB_SECRET": "chaos-ob-secret",
    "CHAOS_AI_SECRET": "chaos-ai-secret",
    "CHAOS_BY_SECRET": "chaos-by-secret",
}
Key = tuple[str, str]  # (vendor, entity key)


@dataclass
class History:
    #: (vendor, entity) -> [(since, raw state)]
    states: dict[Key, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    outages: list[tuple[float, float]] = field(default_factory=list)

    def record(self, key: Key, raw: str) -> None:
        self.states[key].append((time.monotonic(), raw))

    def may_collapse(self, start: float, end: float) -> bool:
        """Documented in the README: inside an outage (plus catch-up), or shorter than one poll cycle.

        A state that began less than a cycle before an outage and ended in it counts as inside: the
        poller may not have polled it before it went down (seen: a step microseconds before a kill).
        """
        if end - start < ONE_CYCLE:
            return True
        return any(start >= down - ONE_CYCLE and end <= up + CATCH_UP for down, up in self.outages)


class TencentWorld:
    """Tasks in two SdkAppIds, moving along the vendor's state machine."""

    vendor = "tencent-ccc"
    apps = (1400000501, 1400000502)

    def __init__(self, rng: random.Random, history: History) -> None:
        self.rng, self.history = rng, history
        self.sim = TencentCccSimulator(
            credentials={"AKIDchaos": SECRETS["CHAOS_TC_SECRET"]}, seed=rng.randrange(1 << 30)
        )
        for app in self.apps:
            for _ in range(4):
                self._add(app)

    def _add(self, app: int) -> None:
        task = self.sim.add_task(app, state=0)
        self.history.record((self.vendor, f"{app}/{task}"), "0")

    def source(self) -> str:
        return f"""
            [[sources]]
            vendor = "tencent-ccc"
            account = "chaos"
            secret_id = "AKIDchaos"
            secret_key = {{ env = "CHAOS_TC_SECRET" }}
            sdk_app_ids = {list(self.apps)}
            endpoint = "{self.sim.url}"
            page_size = 3
        """

    def step(self) -> None:
        app = self.rng.choice(self.apps)
        task = self.sim.apps[app].tasks[self.rng.choice(list(self.sim.apps[app].tasks))]
        options = NEXT_STATES[task.state]
        if options and (new := self.rng.choice(options)) != task.state:
            self.sim.set_state(app, task.task_id, new)
            self.history.record((self.vendor, f"{app}/{task.task_id}"), str(new))
        if self.rng.random() < 0.05:
            self._add(app)

    def final(self) -> dict[Key, str]:
        return {
            (self.vendor, f"{app}/{t.task_id}"): str(t.state)
            for app in self.apps
            for t in self.sim.apps[app].tasks.values()
        }

    def key(self, event: EntityEvent) -> Key:
        return (self.vendor, f"{event.parent_id}/{event.entity_id}")


class HuaweiWorld:
    """Watched task ids whose status moves Pending → Processing ⇄ Suspended → a final status."""

    vendor = "huawei-aicc"

    def __init__(self, rng: random.Random, history: History) -> None:
        self.rng, self.history = rng, history
        self.sim = HuaweiAiccSimulator(
            clients={"chaos-client": SECRETS["CHAOS_HW_SECRET"]}, seed=rng.randrange(1 << 30)
        )
        self.ids = [self.sim.add_task(f"chaos {n}") for n in range(5)]
        for task_id in self.ids:
            self.history.record((self.vendor, task_id), self.sim.tasks[task_id].status)

    def source(self) -> str:
        return f"""
            [[sources]]
            vendor = "huawei-aicc"
            account = "chaos"
            client_id = "chaos-client"
            client_secret = {{ env = "CHAOS_HW_SECRET" }}
            task_ids = {self.ids!r}
            endpoint = "{self.sim.url}"
        """

    def step(self) -> None:
        task = self.sim.tasks[self.rng.choice(self.ids)]
        options = HUAWEI_NEXT.get(task.status, ())
        if options and (new := self.rng.choice(options)) != task.status:
            self.sim.set_status(task.task_id, new)
            self.history.record((self.vendor, task.task_id), new)

    def final(self) -> dict[Key, str]:
        return {(self.vendor, task_id): self.sim.tasks[task_id].status for task_id in self.ids}

    def key(self, event: EntityEvent) -> Key:
        return (self.vendor, event.entity_id)


class OutboundBotWorld:
    """Single-callee jobs: each one that ends Succeeded or Failed must give exactly one call-finished."""

    vendor = "alibaba-outboundbot"
    instance, group = "chaos-instance", "chaos-group"

    def __init__(self, rng: random.Random, history: History) -> None:
        self.rng, self.history = rng, history
        self.sim = OutboundBotSimulator(
            credentials={"LTAIchaos": SECRETS["CHAOS_OB_SECRET"]}, seed=rng.randrange(1 << 30)
        )
        self.sim.add_group(self.instance, self.group)
        self.jobs: list[str] = []
        for _ in range(6):
            self._add()

    def _add(self) -> None:
        job = self.sim.add_job(self.instance, self.group, status="Scheduling")
        self.jobs.append(job)
        self.history.record((self.vendor, job), "Scheduling")

    def source(self) -> str:
        return f"""
            [[sources]]
            vendor = "alibaba-outboundbot"
            account = "chaos"
            instance_id = "{self.instance}"
            job_group_ids = ["{self.group}"]
            access_key_id = "LTAIchaos"
            access_key_secret = {{ env = "CHAOS_OB_SECRET" }}
            endpoint = "{self.sim.url}"
            page_size = 4
        """

    def step(self) -> None:
        job = self.sim.job(self.rng.choice(self.jobs))
        options = OUTBOUNDBOT_NEXT.get(job.status, ())
        if options and (new := self.rng.choice(options)) != job.status:
            self.sim.set_status(job.job_id, new, "NoAnswer" if new == "Failed" else None)
            self.history.record((self.vendor, job.job_id), new)
        if self.rng.random() < 0.1:
            self._add()

    def final(self) -> dict[Key, str]:
        return {(self.vendor, job): self.sim.job(job).status for job in self.jobs}

    def finished_calls(self) -> set[str]:
        return {job for job in self.jobs if self.sim.job(job).status in ("Succeeded", "Failed")}

    def key(self, event: EntityEvent) -> Key:
        return (self.vendor, event.entity_id)


class AiccsWorld:
    """Robot call tasks of one account moving through AICCS's statuses (their counts stay put)."""

    vendor = "alibaba-aiccs"

    def __init__(self, rng: random.Random, history: History) -> None:
        self.rng, self.history = rng, history
        self.sim = AiccsSimulator(
            credentials={"LTAIchaosAiccs": SECRETS["CHAOS_AI_SECRET"]}, seed=rng.randrange(1 << 30)
        )
        self.tasks: list[int] = []
        for _ in range(4):
            self._add()

    def _add(self) -> None:
        task = self.sim.add_task(total=10)
        self.tasks.append(task)
        self.history.record((self.vendor, str(task)), "INIT")

    def source(self) -> str:
        return f"""
            [[sources]]
            vendor = "alibaba-aiccs"
            account = "chaos"
            access_key_id = "LTAIchaosAiccs"
            access_key_secret = {{ env = "CHAOS_AI_SECRET" }}
            endpoint = "{self.sim.url}"
            page_size = 3
        """

    def step(self) -> None:
        task = self.sim.task(self.rng.choice(self.tasks))
        options = AICCS_NEXT.get(task.status, ())
        if options and (new := self.rng.choice(options)) != task.status:
            self.sim.set_task(task.task_id, status=new)
            self.history.record((self.vendor, str(task.task_id)), new)
        if self.rng.random() < 0.05:
            self._add()

    def final(self) -> dict[Key, str]:
        return {(self.vendor, str(task)): self.sim.task(task).status for task in self.tasks}

    def finished_calls(self) -> set[str]:
        return set()

    def key(self, event: EntityEvent) -> Key:
        return (self.vendor, event.entity_id)


class ByRobotWorld:
    """Tasks of one company whose callees finish one by one: each finished call gives one call-finished."""

    vendor = "byrobot"
    company, app_key = 7001, "chaos-app-key"

    def __init__(self, rng: random.Random, history: History) -> None:
        self.rng, self.history = rng, history
        self.sim = ByRobotSimulator(
            credentials={self.app_key: SECRETS["CHAOS_BY_SECRET"]},
            seed=rng.randrange(1 << 30),
            rate_limit=100,
        )
        self.sim.add_company(self.company, self.app_key)
        self.finished: set[str] = set()
        self.tasks = [self._add() for _ in range(3)]

    def _add(self) -> int:
        task = self.sim.add_task(self.company, phones=6, status=0)
        self.history.record((self.vendor, str(task)), "0")
        return task

    def source(self) -> str:
        limits = ", ".join(f"{api} = 100" for api in ("getTasks", "getTaskDetail", "queryDoneTaskPhones"))
        return f"""
            [[sources]]
            vendor = "byrobot"
            account = "chaos"
            company_id = {self.company}
            app_key = "{self.app_key}"
            app_secret = {{ env = "CHAOS_BY_SECRET" }}
            endpoint = "{self.sim.url}"
            page_size = 2
            call_page_size = 2
            rate_limits = {{ {limits} }}
        """

    def _status(self, task: int, new: int) -> None:
        self.sim.set_status(task, new)
        self.history.record((self.vendor, str(task)), str(new))

    def step(self) -> None:
        task_id = self.rng.choice(self.tasks)
        task = self.sim.tasks[task_id]
        waiting = [c for c in task.calls if c.status != 2]
        if task.status == 0:
            self._status(task_id, 1)
        elif task.status == 1 and waiting and self.rng.random() < 0.8:
            outcomes = [self.rng.choice((0, 0, 1, 2, 6)) for _ in waiting[: self.rng.randint(1, 2)]]
            self.finished.update(str(c) for c in self.sim.finish_calls(task_id, outcomes))
            if all(c.status == 2 for c in task.calls):
                self._status(task_id, 2)
        elif task.status == 1:
            self._status(task_id, 4)
        elif task.status == 4:
            self._status(task_id, 1)
        if self.rng.random() < 0.05:
            self.tasks.append(self._add())

    def final(self) -> dict[Key, str]:
        return {(self.vendor, str(t)): str(self.sim.tasks[t].status) for t in self.tasks}

    def finished_calls(self) -> set[str]:
        return set(self.finished)

    def key(self, event: EntityEvent) -> Key:
        return (self.vendor, event.entity_id)


World = TencentWorld | HuaweiWorld | OutboundBotWorld | AiccsWorld | ByRobotWorld
WORLDS: tuple[type[World], ...] = (TencentWorld, HuaweiWorld, OutboundBotWorld, AiccsWorld, ByRobotWorld)


def _poller(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        env={**os.environ, **SECRETS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_chaos_kills_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261122")))
    nats = NatsServer(port=free_port(), store_dir=str(tmp_path / "js")).start()
    history = History()
    worlds: list[World] = [make(rng, history) for make in WORLDS]
    by_vendor = {world.vendor: world for world in worlds}
    with_calls = [w for w in worlds if isinstance(w, OutboundBotWorld | ByRobotWorld)]
    try:
        for world in worlds:
            await world.sim.start()
        config = tmp_path / "poller.toml"
        common = "poll_interval = 0.1\nretries = 1\nfailure_backoff = 0.2\n"
        config.write_text(
            textwrap.dedent(
                f"""
                shutdown_grace = 2.0
                [nats]
                url = "{nats.url}"
                ack_timeout = 1.0
                [http]
                enabled = false
                [coordination]
                # a stable identity, as a StatefulSet pod has: the restarted poller takes its
                # leases back at once instead of waiting for the killed one's to expire
                replica_id = "chaos-poller"
                """
            )
            + "".join(textwrap.dedent(world.source()) + common for world in worlds)
        )
        poller = _poller(config)
        # until the first poll, every state may be collapsed into the one first seen
        restarts: list[tuple[float, float]] = [(0.0, time.monotonic())]
        deadline = time.monotonic() + 25.0
        next_kill = time.monotonic() + rng.uniform(1.5, 4.0)
        while time.monotonic() < deadline:
            rng.choice(worlds).step()
            if time.monotonic() >= next_kill:
                down = time.monotonic()
                if rng.random() < 0.5:
                    poller.send_signal(signal.SIGKILL)
                    poller.wait()
                    await anyio.sleep(rng.uniform(0.1, 1.5))
                    poller = _poller(config)
                    # back at work once every simulator has been asked again: a start-up takes
                    # longer on a loaded machine, so it is read from the simulators' logs at the end
                    restarts.append((down, time.monotonic()))
                else:
                    nats.kill()
                    await anyio.sleep(rng.uniform(0.2, 2.0))
                    nats.start()
                    # the poller needs a moment to reconnect
                    history.outages.append((down, time.monotonic() + 1.5))
                next_kill = time.monotonic() + rng.uniform(1.5, 4.0)
            await anyio.sleep(rng.uniform(0.15, 0.3))

        final: dict[Key, str] = {}
        for world in worlds:
            final.update(world.final())

        async def caught_up() -> bool:
            last: dict[Key, str] = {}
            for event in await stream_events(nats.url):
                if isinstance(event, Tracked) and event.kind is not EntityKind.JOB_GROUP:
                    last[by_vendor[event.vendor].key(event)] = event.current.raw
            return last == final

        await wait_until(caught_up, timeout=30, step=0.5)
        await anyio.sleep(2.0)  # a poller restarted last may still be importing: let it reach its loop
        poller.send_signal(signal.SIGTERM)
        assert poller.wait(10) == 0
        events = await stream_events(nats.url)
        for down, respawned in restarts:
            back = max(min(t for t in world.sim.log.times() if t >= respawned) for world in worlds)
            history.outages.append((down, back + 0.5))
    finally:
        for world in worlds:
            await world.sim.stop()
        nats.close()

    assert len({e.event_id for e in events}) == len(events), "duplicate event ids"
    # zero lost and zero doubled call-finished: one per OutboundBot job that ended Succeeded or
    # Failed, one per BYRobot callee that finished
    for world in with_calls:
        calls = [e.call_id for e in events if isinstance(e, CallFinished) and e.vendor == world.vendor]
        assert world.finished_calls(), f"{world.vendor}: no call finished, the check would be vacuous"
        assert sorted(calls) == sorted(world.finished_calls()), world.vendor
    chains: dict[Key, list[TaskAppeared | TaskStatusChanged | JobStatusChanged]] = defaultdict(list)
    counters: dict[Key, list[int]] = defaultdict(list)
    for event in events:
        if isinstance(event, CallFinished):
            continue
        assert isinstance(event, Tracked | TaskProgress), event
        if event.kind is EntityKind.JOB_GROUP:
            continue  # a derived state; its progress events carry its meaning
        key = by_vendor[event.vendor].key(event)
        counters[key].append(event.seq)
        if isinstance(event, Tracked):
            chains[key].append(event)
    assert set(chains) == set(history.states)
    for key, chain in chains.items():
        assert isinstance(chain[0], TaskAppeared)
        # a consistent chain: counters consecutive (a status change and its progress share one),
        # each previous is the last current
        seqs = counters[key]
        assert seqs == sorted(seqs) and sorted(set(seqs)) == list(range(1, len(set(seqs)) + 1)), key
        for before, after in itertools.pairwise(chain):
            assert isinstance(after, TaskStatusChanged | JobStatusChanged), key
            assert after.previous.raw == before.current.raw, key
        seen = [e.current.raw for e in chain]
        truth = history.states[key]
        # what was published is the real history with only allowed collapses
        position, published = 0, None
        for index, (since, raw) in enumerate(truth):
            until = truth[index + 1][0] if index + 1 < len(truth) else float("inf")
            if position < len(seen) and seen[position] == raw:
                position, published = position + 1, raw
            elif raw != published:  # back to the last published value after a collapse is no change
                assert history.may_collapse(since, until), (key, raw, since, until, seen, truth)
        assert position == len(seen), (key, seen, truth)
