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

from poller.natsserver import NatsServer, free_port
from poller.simulators.tencent_ccc import NEXT_STATES, TencentCccSimulator
from schemas import TaskAppeared, TaskStatusChanged
from tests.helpers import stream_events, wait_until

SECRET_ID, SECRET_KEY = "AKIDchaos", "chaos-secret"
APPS = (1400000501, 1400000502)
CATCH_UP = 1.0


@dataclass
class History:
    #: (app, task) -> [(since, raw state)]
    states: dict[tuple[int, int], list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))
    outages: list[tuple[float, float]] = field(default_factory=list)

    def record(self, key: tuple[int, int], state: int) -> None:
        self.states[key].append((time.monotonic(), str(state)))

    def may_collapse(self, start: float, end: float) -> bool:
        return any(start >= down and end <= up + CATCH_UP for down, up in self.outages)


def _poller(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        env={**os.environ, "CHAOS_SECRET": SECRET_KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
async def test_chaos_kills_lose_nothing_and_double_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261122")))
    nats = NatsServer(port=free_port(), store_dir=str(tmp_path / "js")).start()
    history = History()
    try:
        async with TencentCccSimulator(
            credentials={SECRET_ID: SECRET_KEY}, seed=rng.randrange(1 << 30)
        ) as sim:
            for app in APPS:
                for _ in range(4):
                    task = sim.add_task(app, state=0)
                    history.record((app, task), 0)
            config = tmp_path / "poller.toml"
            config.write_text(
                textwrap.dedent(
                    f"""
                    shutdown_grace = 2.0
                    [nats]
                    url = "{nats.url}"
                    ack_timeout = 1.0
                    [http]
                    enabled = false
                    [[sources]]
                    vendor = "tencent-ccc"
                    account = "chaos"
                    secret_id = "{SECRET_ID}"
                    secret_key = {{ env = "CHAOS_SECRET" }}
                    sdk_app_ids = {list(APPS)}
                    endpoint = "{sim.url}"
                    poll_interval = 0.1
                    page_size = 3
                    retries = 1
                    failure_backoff = 0.2
                    """
                )
            )
            poller = _poller(config)
            # until the first poll, every state may be collapsed into the one first seen
            history.outages.append((0.0, time.monotonic() + 1.5))
            deadline = time.monotonic() + 25.0
            next_kill = time.monotonic() + rng.uniform(1.5, 4.0)
            while time.monotonic() < deadline:
                # the world moves: one valid transition of one task
                app = rng.choice(APPS)
                task_id = rng.choice(list(sim.apps[app].tasks))
                options = NEXT_STATES[sim.apps[app].tasks[task_id].state]
                if options:
                    new = rng.choice(options)
                    if new != sim.apps[app].tasks[task_id].state:
                        sim.set_state(app, task_id, new)
                        history.record((app, task_id), new)
                if rng.random() < 0.05:
                    task_id = sim.add_task(app, state=0)
                    history.record((app, task_id), 0)
                if time.monotonic() >= next_kill:
                    down = time.monotonic()
                    if rng.random() < 0.5:
                        poller.send_signal(signal.SIGKILL)
                        poller.wait()
                        await anyio.sleep(rng.uniform(0.1, 1.5))
                        poller = _poller(config)
                    else:
                        nats.kill()
                        await anyio.sleep(rng.uniform(0.2, 2.0))
                        nats.start()
                    # the poller needs a moment to be back at work (start-up, reconnect)
                    history.outages.append((down, time.monotonic() + 1.5))
                    next_kill = time.monotonic() + rng.uniform(1.5, 4.0)
                await anyio.sleep(rng.uniform(0.3, 0.5))

            final = {(app, t.task_id): str(t.state) for app in APPS for t in sim.apps[app].tasks.values()}

            async def caught_up() -> bool:
                last: dict[str, str] = {}
                for event in await stream_events(nats.url):
                    if isinstance(event, TaskAppeared | TaskStatusChanged):
                        last[f"{event.parent_id}/{event.entity_id}"] = event.current.raw
                return last == {f"{app}/{task}": state for (app, task), state in final.items()}

            await wait_until(caught_up, timeout=30, step=0.5)
            poller.send_signal(signal.SIGTERM)
            assert poller.wait(10) == 0
        events = await stream_events(nats.url)
    finally:
        nats.close()

    assert len({e.event_id for e in events}) == len(events), "duplicate event ids"
    chains: dict[tuple[int, int], list[TaskAppeared | TaskStatusChanged]] = defaultdict(list)
    for event in events:
        assert isinstance(event, TaskAppeared | TaskStatusChanged), event
        assert event.parent_id is not None
        chains[(int(event.parent_id), int(event.entity_id))].append(event)
    assert set(chains) == set(history.states)
    for key, chain in chains.items():
        assert isinstance(chain[0], TaskAppeared)
        # a consistent chain: counters consecutive, each previous is the last current
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1)), key
        for before, after in itertools.pairwise(chain):
            assert isinstance(after, TaskStatusChanged) and after.previous.raw == before.current.raw, key
        seen = [e.current.raw for e in chain]
        truth = history.states[key]
        # what was published is the real history with only allowed collapses
        position = 0
        for index, (since, raw) in enumerate(truth):
            until = truth[index + 1][0] if index + 1 < len(truth) else float("inf")
            if position < len(seen) and seen[position] == raw:
                position += 1
            else:
                assert history.may_collapse(since, until), (key, raw, since, until, seen, truth)
        assert position == len(seen), (key, seen, truth)
