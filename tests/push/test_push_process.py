"""A real ``poller run`` process receiving Tencent pushes beside polling, stopped by SIGTERM."""

from __future__ import annotations

import base64
import os
import signal
import socket
import sys
from collections import Counter
from pathlib import Path

import aiohttp
import anyio
import msgspec
import pytest

from poller.simulators.push import PushPlan
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import CallFinished
from tests.helpers import stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY

APP = 1400000066
USER, PASSWORD = "tccc-push", "process-push-password-never-logged"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
async def test_a_real_process_publishes_every_call_once_with_half_the_pushes_lost(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    port = _free_port()
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=11) as sim:
        task = sim.add_task(APP, state=1, callees=30)
        config = tmp_path / "poller.toml"
        config.write_text(
            f"""
[nats]
url = "{nats_server.url}"
[http]
enabled = false
[push]
enabled = true
port = {port}
[[push.receivers]]
vendor = "tencent-ccc"
account = "tc-proc"
username = "{USER}"
password = {{ env = "PUSH_PASSWORD" }}
[[sources]]
vendor = "tencent-ccc"
account = "tc-proc"
secret_id = "{SECRET_ID}"
secret_key = {{ env = "TENCENT_KEY" }}
sdk_app_ids = [{APP}]
endpoint = "{sim.url}"
poll_interval = 0.5
cdr_settle = 30
""",
            encoding="utf-8",
        )
        env = {**os.environ, "PUSH_PASSWORD": PASSWORD, "TENCENT_KEY": SECRET_KEY}
        stderr = bytearray()
        url = f"http://127.0.0.1:{port}/push/tencent-ccc/tc-proc"
        async with await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", "--config", str(config)], env=env
        ) as process:

            async def collect() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    stderr.extend(chunk)

            async def listening() -> bool:
                try:
                    async with aiohttp.ClientSession() as http, http.post(url, data=b"{}") as resp:
                        return resp.status == 401
                except aiohttp.ClientError:
                    return False

            seat = sim.manual_call(APP, listed=False)  # no push plan yet: only the probe sends it
            probe = msgspec.json.encode(msgspec.structs.replace(seat, SdkAppId=APP))
            basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

            async def answering() -> bool:
                """A seat's call is acknowledged once the app is polled (503 before: push again)."""
                headers = {"Authorization": basic, "Content-Type": "application/json"}
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(f"{url}?action=cdr", data=probe, headers=headers) as resp,
                ):
                    return resp.status == 200

            async def all_there() -> bool:
                calls = [e for e in await stream_events(nats_server.url) if isinstance(e, CallFinished)]
                return len(calls) >= len(placed)

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(collect)
                    await wait_until(listening, timeout=20, step=0.2)
                    await wait_until(answering, timeout=20, step=0.2)
                    plan = PushPlan(
                        url + "?action=cdr&version=1", USER, PASSWORD, drop=0.5, duplicate=0.3, reorder=0.3
                    )
                    sim.push_to(plan)
                    placed = [sim.place_call(APP, task) for _ in range(20)]
                    await sim.pushes_settled()
                    await wait_until(all_there, timeout=20, step=0.2)
                    await anyio.sleep(1.5)  # a few more polling cycles: nothing more may appear
                    process.send_signal(signal.SIGTERM)
                    with anyio.fail_after(30):
                        returncode = await process.wait()
            except BaseException:
                process.kill()  # a failed step must not leave the test waiting for the process forever
                raise
        events = await stream_events(nats_server.url)

    text = stderr.decode()
    assert returncode == 0, text[-2000:]
    assert "push receivers listening" in text and "push refused" in text  # the logs were read
    calls = [e for e in events if isinstance(e, CallFinished)]
    assert Counter(c.call_id for c in calls) == Counter(c.SessionId for c in placed)
    assert {c.task_id for c in calls} == {str(task)}  # the seat's call: acknowledged, never published
    dropped = {p.session_id for p in sim.pushes if p.outcome == "dropped"}
    assert dropped and all(c.learned_by == "poll" for c in calls if c.call_id in dropped)
    assert any(c.learned_by == "push" for c in calls)
    assert PASSWORD not in text and SECRET_KEY not in text
    assert not any(c.Callee and c.Callee in text for c in placed)
