"""SIGTERM while NATS fails, on real processes: the exit is bounded and a restart loses nothing.

A real nats-server and a real poller process; the BYRobot simulator over loopback HTTP. The task
finishes with new calls while NATS does not answer (SIGSTOP), so the cycle's publish hangs; the
poller gets SIGTERM and NATS then stays silent, goes down, or comes back just as the grace runs
out. The poller must exit within the grace plus the documented bound, and after a restart of
everything the stream must hold every call once and the task's terminal status after its calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats.js.errors import NotFoundError

from poller.tools.natsserver import NatsServer
from schemas import CallFinished, Event, TaskAppeared, TaskState, TaskStatusChanged
from tests.helpers import stream_events, wait_until
from tests.vendors.test_byrobot import APP_KEY, APP_SECRET, COMPANY, finished_calls, simulator

GRACE = 1.5
#: what the shutdown may take beyond the grace (docs/delivery.md): closing the NATS connection,
#: bounded at 5 s when NATS does not answer
BOUND = 5.5


def _config(path: Path, nats_url: str, sim_url: str) -> Path:
    path.write_text(
        f"""
shutdown_grace = {GRACE}
[nats]
url = "{nats_url}"
ack_timeout = 1.0
[http]
enabled = false
[[sources]]
vendor = "byrobot"
account = "by-main"
company_id = {COMPANY}
app_key = "{APP_KEY}"
app_secret = "{APP_SECRET}"
endpoint = "{sim_url}"
poll_interval = 0.1
detail_interval = 3600.0
retries = 1
failure_backoff = 0.2
rate_limits = {{ getTasks = 200, getTaskDetail = 200, queryDoneTaskPhones = 200, phoneLogInfo = 200 }}
"""
    )
    return path


def _poller(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _events_where(url: str, ready: Any, timeout: float = 20.0) -> list[Event]:
    found: list[Event] = []

    async def check() -> bool:
        try:
            found[:] = await stream_events(url)
        except NotFoundError:
            return False  # the poller has not set the stream up yet
        return bool(ready(found))

    await wait_until(check, timeout=timeout, step=0.2)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["silent", "down", "back-as-the-grace-ends"])
async def test_sigterm_while_nats_fails_exits_in_bounded_time_and_loses_no_call(
    tmp_path: Path, fault: str
) -> None:
    nats = NatsServer(store_dir=str(tmp_path / "js")).start()
    assert nats.process is not None
    sim = simulator()
    log = tmp_path / "poller.log"
    try:
        async with sim:
            task = sim.add_task(COMPANY, phones=8, status=1, finished=(0,))
            config = _config(tmp_path / "poller.toml", nats.url, sim.url)
            poller = _poller(config, log)
            await _events_where(nats.url, lambda es: any(isinstance(e, TaskAppeared) for e in es))

            os.kill(nats.process.pid, signal.SIGSTOP)
            sim.finish_calls(task, (0, 2, 1, 0, 6))
            sim.set_status(task, 2)
            await anyio.sleep(1.0)  # the poller reads the change and waits for acks that do not come
            asked = time.monotonic()
            poller.send_signal(signal.SIGTERM)
            if fault == "down":
                await anyio.sleep(GRACE / 2)
                nats.kill()
            elif fault == "back-as-the-grace-ends":
                await anyio.sleep(GRACE - 0.2)
                nats.kill()
                nats.start()
            poller.wait(GRACE + BOUND + 10)
            took = time.monotonic() - asked
            assert took <= GRACE + BOUND, f"exit took {took:.1f} s"

            nats.kill()  # SIGKILL works on a stopped process too
            nats.start()
            poller = _poller(config, log)

            def complete(events: list[Event]) -> bool:
                calls = {e.call_id for e in events if isinstance(e, CallFinished)}
                return calls == set(finished_calls(sim)) and any(
                    isinstance(e, TaskStatusChanged) and e.current.state is TaskState.COMPLETED
                    for e in events
                )

            try:
                events = await _events_where(nats.url, complete)
            finally:
                poller.send_signal(signal.SIGTERM)
                poller.wait(GRACE + BOUND + 10)
    finally:
        nats.close()

    calls = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert sorted(calls) == sorted(finished_calls(sim)), log.read_text()[-3000:]
    finished = [i for i, e in enumerate(events) if isinstance(e, TaskStatusChanged)]
    assert len(finished) == 1
    assert max(i for i, e in enumerate(events) if isinstance(e, CallFinished)) < finished[0]
