"""NATS down for a while: the poller keeps running, advances nothing, and catches up exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio

from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import TaskAppeared, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000200


async def test_outage_then_catch_up_without_loss_or_duplicates(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=0)
        config = make_config(nats_server.url, [tencent_source(sim, [APP])])
        async with running(config) as service:
            await polls_done(service, 1)
            nats_server.stop()
            await wait_until(lambda: not service.nats_connected, timeout=10)
            sim.set_state(APP, task, 1)
            await anyio.sleep(1.5)
            requests_during_outage = sim.log.count()
            sim.set_state(APP, task, 2)
            await anyio.sleep(1.5)
            # the source is parked on its unacked publish: no polling piles up state in memory
            assert sim.log.count() - requests_during_outage <= 1
            assert not service.nats_connected
            nats_server.start()
            await wait_until(lambda: service.nats_connected, timeout=15)

            async def both_changes_out() -> bool:
                return (
                    sum(isinstance(e, TaskStatusChanged) for e in await stream_events(nats_server.url)) >= 2
                )

            await wait_until(both_changes_out, timeout=20)
            await polls_done(service, 2)
    events = await stream_events(nats_server.url)
    assert [type(e) for e in events] == [TaskAppeared, TaskStatusChanged, TaskStatusChanged]
    changes = [(e.previous.raw, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)]
    assert changes == [("0", "1"), ("1", "2")]
    assert len({e.event_id for e in events}) == 3


def test_sigterm_drains_and_exits_zero(tmp_path: Path, nats_server: NatsServer) -> None:
    """The real command, a real signal: exit 0 within the documented grace period."""
    script = tmp_path / "serve_sim.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import anyio, sys
            from poller.simulators.tencent_ccc import TencentCccSimulator
            async def main():
                sim = TencentCccSimulator(credentials={{"{SECRET_ID}": "{SECRET_KEY}"}})
                for _ in range(5):
                    sim.add_task({APP}, state=1)
                await sim.start()
                print(sim.url, flush=True)
                await anyio.sleep_forever()
            anyio.run(main)
            """
        )
    )
    sim_proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert sim_proc.stdout is not None
        url = sim_proc.stdout.readline().strip()
        config = tmp_path / "poller.toml"
        config.write_text(
            textwrap.dedent(
                f"""
                shutdown_grace = 5.0
                [nats]
                url = "{nats_server.url}"
                [http]
                enabled = false
                [[sources]]
                vendor = "tencent-ccc"
                account = "sig"
                secret_id = "{SECRET_ID}"
                secret_key = {{ env = "TC_SECRET" }}
                sdk_app_ids = [{APP}]
                endpoint = "{url}"
                poll_interval = 0.05
                """
            )
        )
        env = {**os.environ, "TC_SECRET": SECRET_KEY}
        poller = subprocess.Popen(
            [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.5)
        assert poller.poll() is None, poller.communicate()
        started = time.monotonic()
        poller.send_signal(signal.SIGTERM)
        out, err = poller.communicate(timeout=15)
        assert poller.returncode == 0, err
        assert time.monotonic() - started < 5.0 + 2.0
        assert SECRET_KEY not in out + err
    finally:
        sim_proc.kill()
        sim_proc.wait()
    events = anyio.run(stream_events, nats_server.url)
    assert sum(isinstance(e, TaskAppeared) for e in events) == 5
