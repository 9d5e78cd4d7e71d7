"""Every channel out of a real ``poller run`` carries no secret and no personal data, even when the
vendors' error messages echo the token request's form body and quote callee numbers and names.

Channels: events on the real stream, the JSON log lines on stderr, the ``/readyz`` body, the
``/metrics`` exposition and a control reply.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.parse
from pathlib import Path

import aiohttp
import anyio
import msgspec
import nats
from aiohttp import web

from poller.runtime.control import control_subject
from poller.runtime.kv_keys import kv_keys
from poller.simulators.base import Fault, json_response
from poller.simulators.huawei_aicc import CONTENT_TYPE, HuaweiAiccSimulator
from poller.simulators.tencent_ccc import TencentCccSimulator, _error
from poller.tools.natsserver import NatsServer, free_port
from schemas import SourceDegraded, TaskAppeared
from schemas.vendors.huawei import OAuthError
from tests.helpers import bucket_bytes, stream_events, wait_until

CLIENT_ID = "hostile-client"
#: characters a form body URL-encodes, so the echo carries the secret in its encoded form too
CLIENT_SECRET = "hu4w3i+sec/ret=value"
TENCENT_ID = "AKIDredactionTest"
TENCENT_KEY = "tencent-key-that-must-stay-home"
APP = 1400000777
MOBILE = "13812345678"
NAME = "王小明"
LANDLINE = "021-87654321"


class EchoingHuawei(HuaweiAiccSimulator):
    """A token endpoint that quotes the whole form body (client_secret included) when it refuses."""

    async def _token(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode()
        error = OAuthError(
            error="invalid_client",
            error_description=f"rejected {body}; contact customerName={NAME} at {MOBILE}",
        )
        return json_response(msgspec.json.encode(error), 401, CONTENT_TYPE)


class QuotingTencent(TencentCccSimulator):
    """An internal error whose message quotes the callee it was dialling."""

    def error_answer(self, kind: Fault, api: str) -> web.StreamResponse:
        return _error(
            "InternalError", f"callee +86 {MOBILE[:3]}-{MOBILE[3:7]}-{MOBILE[7:]} / {LANDLINE} busy"
        )


def _leaks(text: str) -> list[str]:
    """Which of the secrets and personal values appear in ``text`` (in any spelling we know)."""
    digits_only = "".join(ch for ch in text if ch.isdigit() or ch.isspace())
    forms = {
        "client secret": [CLIENT_SECRET, urllib.parse.quote_plus(CLIENT_SECRET), "hu4w3i"],
        "tencent key": [TENCENT_KEY],
        "name": [NAME],
        "mobile": [MOBILE, "1234-5678", "12345678"],
        "landline": [LANDLINE, "87654321"],
    }
    found = [what for what, spellings in forms.items() if any(s in text for s in spellings)]
    if MOBILE in digits_only.replace(" ", ""):
        found.append("mobile digits")
    return found


async def test_no_channel_of_a_real_run_carries_a_secret_or_a_phone_number(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    huawei = EchoingHuawei(clients={CLIENT_ID: "the-right-one"})
    tencent = QuotingTencent(credentials={TENCENT_ID: TENCENT_KEY})
    async with huawei, tencent:
        tencent.add_task(APP, state=1)
        tencent.inject(Fault.SERVER_ERROR)
        port = free_port()
        config = tmp_path / "poller.toml"
        config.write_text(
            f"""
[nats]
url = "{nats_server.url}"
[http]
host = "127.0.0.1"
port = {port}
[[sources]]
vendor = "huawei-aicc"
account = "hostile"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "REDACTION_HUAWEI_SECRET" }}
task_ids = ["task-1"]
endpoint = "{huawei.url}"
poll_interval = 0.1
retries = 0
failure_backoff = 0.1
[[sources]]
vendor = "tencent-ccc"
account = "quoting"
secret_id = "{TENCENT_ID}"
secret_key = {{ env = "REDACTION_TENCENT_KEY" }}
sdk_app_ids = [{APP}]
endpoint = "{tencent.url}"
poll_interval = 0.1
retries = 0
failure_backoff = 0.1
"""
        )
        env = {
            **os.environ,
            "REDACTION_HUAWEI_SECRET": CLIENT_SECRET,
            "REDACTION_TENCENT_KEY": TENCENT_KEY,
            "PYTHONPATH": os.getcwd(),
        }
        stderr = bytearray()
        bodies: dict[str, str] = {}
        async with await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", "--config", str(config)], env=env
        ) as process:

            async def collect() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    stderr.extend(chunk)

            async def get(path: str) -> tuple[int, str]:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}{path}") as resp,
                ):
                    return resp.status, await resp.text()

            async def both_failing() -> bool:
                try:
                    status, body = await get("/readyz")
                except aiohttp.ClientError:
                    return False
                failing = json.loads(body).get("sources_failing", [])
                bodies["readyz"] = body
                return status == 200 and len([p for p in failing if p["problem"] == "failing"]) == 2

            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                await wait_until(both_failing, timeout=20)
                bodies["metrics"] = (await get("/metrics"))[1]
                nc = await nats.connect(nats_server.url)
                try:
                    subject = control_subject("aicc", "huawei-aicc", "hostile")
                    reply = await nc.request(
                        subject, json.dumps({"add": [MOBILE], "remove": [MOBILE]}).encode(), timeout=5
                    )
                    bodies["control"] = reply.data.decode()
                finally:
                    await nc.close()
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(15):
                    assert await process.wait() == 0
    events = await stream_events(nats_server.url)
    degraded = [e for e in events if isinstance(e, SourceDegraded)]
    assert {e.account for e in degraded} == {"hostile", "quoting"}
    # the redaction kept what an operator needs: the vendor's code and the shape of the answer
    assert any("invalid_client" in e.detail and "client_secret=<redacted>" in e.detail for e in degraded)
    assert any("InternalError" in e.detail for e in degraded)
    assert json.loads(bodies["control"])["ok"] is False
    logs = stderr.decode()
    assert "poll cycle failed" in logs
    channels = {
        "events": "\n".join(msgspec.json.encode(e).decode() for e in events),
        "logs": logs,
        **bodies,
    }
    leaks = {name: _leaks(text) for name, text in channels.items()}
    assert leaks == {name: [] for name in channels}, leaks


async def test_the_state_bucket_of_a_real_run_keeps_no_personal_data_of_a_task_name(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The state bucket is a channel too: a task named with a callee's number and name is committed
    with both redacted, and the events carry the name as before."""
    tencent = TencentCccSimulator(credentials={TENCENT_ID: TENCENT_KEY})
    async with tencent:
        tencent.add_task(APP, name=f"回访 {MOBILE} 客户姓名：{NAME}", state=1)
        config = tmp_path / "poller.toml"
        config.write_text(
            f"""
[nats]
url = "{nats_server.url}"
[[sources]]
vendor = "tencent-ccc"
account = "named"
secret_id = "{TENCENT_ID}"
secret_key = "{TENCENT_KEY}"
sdk_app_ids = [{APP}]
endpoint = "{tencent.url}"
poll_interval = 0.1
"""
        )
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        nc = await nats.connect(nats_server.url)
        try:
            async with await anyio.open_process(
                [sys.executable, "-m", "poller.cli", "run", "--config", str(config)], env=env
            ) as process:

                async def committed() -> bool:
                    try:
                        kv = await nc.jetstream().key_value("aicc_poller_state")
                        return bool([k for k in await kv_keys(kv) if k.endswith(".meta")])
                    except Exception:
                        return False

                await wait_until(committed, timeout=20)
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(15):
                    assert await process.wait() == 0
            kv = await nc.jetstream().key_value("aicc_poller_state")
            bucket = await bucket_bytes(kv)
        finally:
            await nc.close()
    events = await stream_events(nats_server.url)
    (appeared,) = [e for e in events if isinstance(e, TaskAppeared)]
    assert appeared.name == f"回访 {MOBILE[:3]}******{MOBILE[-2:]} 客户姓名：{NAME[0]}**"  # as before
    assert b"138" in bucket  # the masked number is there, the rest of it is not
    assert _leaks(bucket.decode(errors="replace")) == []
