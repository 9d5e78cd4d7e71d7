"""Hostile vendor answers on a real poller process, a real nats-server and a simulator over HTTP.

An absurd listing total degrades the source with reason ``too_large`` while ``/healthz`` keeps
answering; one empty "complete" listing vanishes nothing, and a held mass disappearance survives a
restart until a second complete listing confirms it; degradation events carry their scope and
count from the first failed request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import anyio
from nats.js.errors import BadRequestError, NotFoundError

from poller.simulators.base import Fault, Simulator
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer, free_port
from schemas import DegradeReason, Event, SourceDegraded, SourceRecovered, TaskAppeared, TaskVanished
from tests.helpers import make_config, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000300
#: the listing the faults below aim at (the call reads have their own, checked in their own tests)
LISTING = "DescribeAutoCalloutTasks"
SECRET_ENV = {"HOSTILE_TC_SECRET": SECRET_KEY}


def _config(path: Path, nats_url: str, sim: Simulator, http_port: int | None = None) -> Path:
    http = f'enabled = true\nhost = "127.0.0.1"\nport = {http_port}' if http_port else "enabled = false"
    path.write_text(
        textwrap.dedent(
            f"""
            shutdown_grace = 3.0
            [nats]
            url = "{nats_url}"
            [http]
            {{http}}
            [[sources]]
            vendor = "tencent-ccc"
            account = "hostile"
            secret_id = "{SECRET_ID}"
            secret_key = {{ env = "HOSTILE_TC_SECRET" }}
            sdk_app_ids = [{APP}]
            endpoint = "{sim.url}"
            poll_interval = 0.1
            retries = 1
            failure_backoff = 0.2
            calls = false  # the listing alone: a call read failing in the same cycle would fail it
            """
        ).replace("{http}", http)
    )
    return path


@contextlib.contextmanager
def poller(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        env={**os.environ, **SECRET_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def published(nats_url: str) -> list[Event]:
    """The stream's events; none while the poller process has not created the stream yet, or
    while it is still empty (the helper then asks for message 0, which is a bad request)."""
    try:
        return await stream_events(nats_url)
    except (NotFoundError, BadRequestError):
        return []


def outcomes(sim: Simulator) -> list[str]:
    return [r.outcome for r in sim.log.records]


async def test_an_absurd_total_degrades_with_too_large_and_healthz_keeps_answering(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = free_port()
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        for _ in range(3):
            sim.add_task(APP, state=1)
        sim.inject(Fault.ABSURD_TOTAL, api=LISTING)
        with poller(_config(tmp_path / "poller.toml", nats_server.url, sim, port)) as process:
            async with aiohttp.ClientSession() as http:

                async def degraded() -> bool:
                    events = await published(nats_server.url)
                    return any(isinstance(e, SourceDegraded) for e in events)

                await wait_until(degraded, timeout=20, step=0.2)
                answered = 0
                while outcomes(sim).count("absurd_total") < 3:  # several refused sweeps meanwhile
                    with anyio.fail_after(2.0):  # a blocked event loop would not answer for seconds
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                            assert resp.status == 200
                    answered += 1
                    await anyio.sleep(0.1)
                assert answered and process.poll() is None
            sim.clear_faults()

            async def recovered() -> bool:
                return any(isinstance(e, SourceRecovered) for e in await published(nats_server.url))

            await wait_until(recovered, timeout=20, step=0.2)
    events = await stream_events(nats_server.url)
    (episode,) = [e for e in events if isinstance(e, SourceDegraded)]
    assert episode.reason is DegradeReason.TOO_LARGE and episode.api == "DescribeAutoCalloutTasks"
    assert Counter(type(e).__name__ for e in events) == {
        "SourceDegraded": 1,
        "SourceRecovered": 1,
        "TaskAppeared": 3,
    }


async def test_one_empty_listing_vanishes_nothing_and_a_held_loss_survives_a_restart(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        for _ in range(6):
            sim.add_task(APP, state=1)
        config = _config(tmp_path / "poller.toml", nats_server.url, sim)
        reaches = _counter(nats_server.url)
        with poller(config):
            await wait_until(reaches(TaskAppeared, 6), timeout=20, step=0.2)
            # one empty answer, then the world again
            sim.inject(Fault.EMPTY_LISTING, remaining=1, api=LISTING)
            await wait_until(lambda: _oks_after(sim, "empty_listing") >= 3, timeout=20)
            # a second empty answer, then nothing usable: the loss is held when the poller stops
            sim.faults.clear()
            sim.log.records.clear()
            sim.inject(Fault.EMPTY_LISTING, remaining=1, api=LISTING)
            sim.inject(Fault.MALFORMED)
            await wait_until(lambda: "malformed" in outcomes(sim), timeout=20)
            await wait_until(reaches(SourceDegraded, 1), timeout=20, step=0.2)
        assert await reaches(TaskVanished, 0)(), "one empty listing vanished tasks"
        sim.clear_faults()
        # the first listing after the restart agrees
        sim.inject(Fault.EMPTY_LISTING, remaining=1, api=LISTING)
        with poller(config):
            await wait_until(reaches(TaskVanished, 6), timeout=20, step=0.2)
            # and the world is back on the next sweep: each task re-appears once
            await wait_until(reaches(TaskAppeared, 12), timeout=20, step=0.2)
    events = await stream_events(nats_server.url)
    assert Counter(type(e).__name__ for e in events) == {
        "TaskAppeared": 12,
        "TaskVanished": 6,
        "SourceDegraded": 1,
        "SourceRecovered": 1,
    }
    assert len({e.event_id for e in events}) == len(events)


def _counter(nats_url: str) -> Callable[[type, int], Callable[[], Awaitable[bool]]]:
    """``reaches(kind, n)``: a check that the stream holds exactly ``n`` events of that kind."""

    def reaches(kind: type, n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return sum(isinstance(e, kind) for e in await published(nats_url)) == n

        return check

    return reaches


def _oks_after(sim: Simulator, outcome: str) -> int:
    """How many good answers the simulator gave after the first answer with this outcome."""
    seen = outcomes(sim)
    return seen[seen.index(outcome) :].count("ok") if outcome in seen else 0


async def test_degradation_events_carry_the_scope_and_count_from_the_first_failed_request(
    nats_server: NatsServer,
) -> None:
    apps = [1400000301, 1400000302]
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        for app in apps:
            sim.add_task(app, state=1)
        # each request hangs 0.4 s, twice (retries = 1): a cycle fails 0.8 s after its first request
        source = tencent_source(sim, apps, request_timeout=0.4, failure_backoff=1.0)
        async with running(make_config(nats_server.url, [source])) as service:
            await wait_until(lambda: all(s.last_success for s in service.statuses.values()), timeout=10)
            sim.inject(Fault.HANG)
            await wait_until(lambda: all(s.degraded for s in service.statuses.values()), timeout=20)
            sim.clear_faults()
            await wait_until(lambda: not any(s.degraded for s in service.statuses.values()), timeout=20)
    events = await stream_events(nats_server.url)
    degraded = {e.scope: e for e in events if isinstance(e, SourceDegraded)}
    recovered = {e.scope: e for e in events if isinstance(e, SourceRecovered)}
    assert set(degraded) == set(recovered) == {str(app) for app in apps}
    for scope, start in degraded.items():
        end = recovered[scope]
        assert start.episode == end.episode == 1
        assert start.first_failed_at is not None
        # the cycle reported the failure after both attempts: the episode began at the first
        waited = (start.observed_at - start.first_failed_at).total_seconds()
        assert waited >= 0.7, waited
        assert end.degraded_seconds >= (end.observed_at - start.observed_at).total_seconds() + 0.7
