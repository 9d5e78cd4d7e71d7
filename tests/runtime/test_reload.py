"""SIGHUP reloads the configuration of a real ``poller run``: sources come and go without a restart."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest

from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import Event, TaskAppeared
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.runtime.processes import Poller, simulator, write_config
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source


@pytest.fixture(scope="module")
def tencent() -> Iterator[dict[str, Any]]:
    with simulator("tencent-ccc", seed=11) as sources:
        yield sources[0]


def _account(base: dict[str, Any], name: str, app: int) -> dict[str, Any]:
    return {**base, "account": name, "sdk_app_ids": [app], "poll_interval": 0.2}


async def _events(url: str) -> list[Event]:
    """The stream's events; none while it is still empty."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("AICC")
    finally:
        await nc.close()
    return await stream_events(url) if info.state.messages else []


def _accounts_seen(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in anyio.run(_events, url):
        counts[event.account] = counts.get(event.account, 0) + 1
    return counts


def _wait_events(url: str, account: str, more_than: int = 0, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = _accounts_seen(url).get(account, 0)
        if seen > more_than:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"no new events of {account} in {timeout} s")


def test_sighup_adds_and_removes_sources_and_keeps_running_on_a_broken_file(
    tmp_path: Path, tencent: dict[str, Any]
) -> None:
    first, second = tencent["sdk_app_ids"][:2]
    path = tmp_path / "p.toml"
    with NatsServer() as server:
        write_config(path, server.url, [_account(tencent, "alpha", first)])
        poller = Poller(path)
        try:
            poller.wait_for("poller started")
            _wait_events(server.url, "alpha")
            assert "beta" not in _accounts_seen(server.url)

            # a source added: its state loads and its events appear, without a restart
            write_config(
                path, server.url, [_account(tencent, "alpha", first), _account(tencent, "beta", second)]
            )
            mark = len(poller.err)
            poller.signal(signal.SIGHUP)
            assert '"started": 1' in poller.wait_for("configuration reloaded", after=mark)
            _wait_events(server.url, "beta")

            # a broken file: one line, the running configuration is kept
            path.write_text("[nats\nurl = ")
            mark = len(poller.err)
            poller.signal(signal.SIGHUP)
            poller.wait_for("configuration reload rejected", after=mark)
            time.sleep(1.0)
            assert poller.proc.poll() is None
            assert sum("reload rejected" in line for line in poller.err[mark:]) == 1
            assert not any("configuration reloaded" in line for line in poller.err[mark:])

            # a source changed: it restarts from its committed state (nothing it saw is reported again)
            slower = {**_account(tencent, "beta", second), "poll_interval": 0.3}
            write_config(path, server.url, [_account(tencent, "alpha", first), slower])
            mark = len(poller.err)
            poller.signal(signal.SIGHUP)
            line = poller.wait_for("configuration reloaded", after=mark)
            assert '"stopped": 1' in line and '"started": 1' in line and '"sources": 2' in line

            # a source removed: its loop stops (draining and committing), the other keeps going
            write_config(path, server.url, [slower])
            mark = len(poller.err)
            poller.signal(signal.SIGHUP)
            line = poller.wait_for("configuration reloaded", after=mark)
            assert '"stopped": 1' in line and '"started": 0' in line and '"sources": 1' in line
            beta = _accounts_seen(server.url)["beta"]
            _wait_events(server.url, "beta", more_than=beta)

            poller.signal(signal.SIGTERM)
            assert poller.wait(15) == 0, poller.stderr[-3000:]
            assert "Traceback" not in poller.stderr
        finally:
            poller.kill()
        events = anyio.run(stream_events, server.url)
    ids = [event.event_id for event in events]
    assert len(ids) == len(set(ids))
    appeared = [(e.account, e.entity_id) for e in events if isinstance(e, TaskAppeared)]
    assert len(appeared) == len(set(appeared)), "a restarted source reported a task again"


def test_a_source_added_while_nats_is_down_does_not_hold_up_the_stop(
    tmp_path: Path, tencent: dict[str, Any]
) -> None:
    first, second = tencent["sdk_app_ids"][:2]
    path = tmp_path / "p.toml"
    with NatsServer() as server:
        write_config(path, server.url, [_account(tencent, "alpha", first)], extra="shutdown_grace = 2.0")
        poller = Poller(path)
        try:
            poller.wait_for("poller started")
            server.kill()
            poller.wait_for("NATS disconnected")
            sources = [_account(tencent, "alpha", first), _account(tencent, "beta", second)]
            write_config(path, server.url, sources, extra="shutdown_grace = 2.0")
            mark = len(poller.err)
            poller.signal(signal.SIGHUP)
            assert '"started": 1' in poller.wait_for("configuration reloaded", after=mark)
            time.sleep(1.0)  # beta is waiting for NATS to load its state
            started = time.monotonic()
            poller.signal(signal.SIGTERM)
            assert poller.wait(15) == 0, poller.stderr[-3000:]
            assert time.monotonic() - started < 2.0 + 5.0
        finally:
            poller.kill()


async def test_a_removed_source_leaves_status_and_gauges() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        sim.add_task(1400000920)
        sim.add_task(1400000921)
        with NatsServer() as server:
            keep = tencent_source(sim, [1400000920], account="keep")
            gone = tencent_source(sim, [1400000921], account="gone")
            async with running(make_config(server.url, [keep, gone])) as service:
                await polls_done(service, 1)
                assert 'account="gone"' in service.metrics_exposition().decode()
                service.request_reload(make_config(server.url, [keep]))
                await wait_until(lambda: len(service.statuses) == 1)
                await polls_done(service, 1)
                assert [s.source.account for s in service.statuses.values()] == ["keep"]
                exposition = service.metrics_exposition().decode()
                gauges = ("aicc_source_degraded", "aicc_entities_tracked", "aicc_state_commit_lag_seconds")
                stale = [
                    line
                    for line in exposition.splitlines()
                    if line.startswith(gauges) and 'account="gone"' in line
                ]
                assert not stale
