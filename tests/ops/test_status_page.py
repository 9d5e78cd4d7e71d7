"""/status and /status.json during a real run: every vendor simulator, a real nats-server, Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import anyio
import msgspec
import pytest

from poller.ops.configview import secret_values
from poller.ops.redaction import public_url, status_redactor
from poller.ops.statuspage import StatusDocument
from poller.runtime.service import Service
from poller.simulators.base import Fault
from poller.simulators.registry import DemoSetup
from poller.tools.natsserver import NatsServer, free_port
from tests.helpers import make_config, wait_until
from tests.ops.everyvendor import every_vendor

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def _get(port: int, path: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, resp.content_type, await resp.read()


async def _document(port: int) -> StatusDocument:
    status, _, body = await _get(port, "/status.json")
    assert status == 200
    return msgspec.json.decode(body, type=StatusDocument)


async def test_status_json_has_a_row_per_source_with_its_facts(nats_server: NatsServer) -> None:
    async with every_vendor(nats_server) as (service, setups):
        await _status_json_facts(service, setups)


async def _status_json_facts(service: Service, setups: dict[str, DemoSetup]) -> None:
    port = service.http_port
    assert port is not None
    doc = await _document(port)
    assert doc.ready and doc.nats.connected and doc.nats.stream == "AICC"
    assert {row.key for row in doc.sources} == set(service.statuses)
    assert {row.vendor for row in doc.sources} == set(setups)
    for row in doc.sources:
        assert row.health == "ok" and row.last_outcome == "ok", row
        assert row.last_poll_started is not None and row.last_poll_ended is not None
        assert row.duration_seconds is not None and row.duration_seconds >= 0
        assert row.next_poll_due is not None and row.next_poll_in_seconds is not None
        assert row.apis and row.limits, row
        assert all(limit.limit > 0 and limit.in_window >= 0 for limit in row.limits)
        assert row.consecutive_failures == 0 and row.degraded_since is None and row.last_error is None
    huawei = next(row for row in doc.sources if row.vendor == "huawei-aicc")
    assert huawei.watch_list is not None and len(huawei.watch_list) == 3
    assert all(row.watch_list is None for row in doc.sources if row.vendor != "huawei-aicc")
    assert sum(row.entities for row in doc.sources) > 0
    assert any(row.stream_seq > 0 for row in doc.sources)
    assert doc.recent_events and all(event.summary for event in doc.recent_events)
    highest = max(row.stream_seq for row in doc.sources)
    # stream facts are refreshed every few seconds, not read per request
    await wait_until(lambda: (service.stream_facts.last_seq or 0) >= highest, timeout=10)
    doc = await _document(port)
    assert doc.nats.stream_last_seq is not None and doc.nats.stream_last_seq >= max(
        row.stream_seq for row in doc.sources
    )

    # one vendor starts refusing the credentials: its row says so, the others stay as they were
    tencent = setups["tencent-ccc"].simulator
    tencent.inject(Fault.AUTH)
    await wait_until(lambda: any(s.consecutive_failures >= 1 for s in service.statuses.values()), timeout=15)
    doc = await _document(port)
    failed = [row for row in doc.sources if row.last_outcome == "failed"]
    # the demo runs more than one Tencent source on the one simulator: any of them may be the first to fail
    assert failed and {row.vendor for row in failed} == {"tencent-ccc"}
    for row in failed:
        assert row.health == "degraded" and row.degraded_since is not None
        assert row.last_error is not None and "auth_failed" in row.last_error
    assert any(event.type == "source-degraded" for event in doc.recent_events)
    _, _, body = await _get(port, "/status.json")
    secrets = secret_values(service.config)
    assert secrets and not [secret for secret in secrets if secret.encode() in body]
    tencent.clear_faults()
    await wait_until(lambda: not any(s.degraded for s in service.statuses.values()), timeout=20)
    doc = await _document(port)
    assert all(row.health == "ok" for row in doc.sources)
    assert any(event.type == "source-recovered" for event in doc.recent_events)


async def test_status_assets_ship_in_the_package_and_nothing_else_is_served(nats_server: NatsServer) -> None:
    async with every_vendor(nats_server) as (service, _):
        await _assets(service)


async def _assets(service: Service) -> None:
    assert service.http_port is not None
    status, content_type, body = await _get(service.http_port, "/status")
    assert status == 200 and content_type == "text/html"
    assert b"status.json" in body and b"http" not in body.replace(b"http-equiv", b"")
    for name, kind in (("status.js", "text/javascript"), ("status.css", "text/css")):
        status, content_type, _ = await _get(service.http_port, f"/status/assets/{name}")
        assert (status, content_type) == (200, kind)
    for probe in ("../http.py", "status.html.bak", "..%2Fhttp.py"):
        assert (await _get(service.http_port, f"/status/assets/{probe}"))[0] == 404


def test_status_text_is_redacted_through_one_function() -> None:
    redact = status_redactor(["configured-secret-value"])
    text = redact("auth: token=abc123def and configured-secret-value for 13812345678")
    assert "abc123def" not in text and "configured-secret-value" not in text
    assert "13812345678" not in text and "138******78" in text  # the mask of poller.pipeline.redact


def _chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=3000",
                *args,
            ],
            capture_output=True,
            timeout=60,
        )


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
async def test_the_page_renders_every_source_in_a_real_browser(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with every_vendor(nats_server) as (service, setups):
        await _browser(service, setups, tmp_path)


async def _browser(service: Service, setups: dict[str, DemoSetup], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{service.http_port}/status"
    dom = await anyio.to_thread.run_sync(lambda: _chromium("--dump-dom", url))
    html = dom.stdout.decode()
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    for key in service.statuses:
        assert f'data-source-key="{key}"' in html, key
    assert "watching:" in html and "loading status.json" not in html
    assert html.count('class="badge ok"') >= len(service.statuses)

    # a source in trouble shows as such, with its (redacted) error
    setups["byrobot"].simulator.inject(Fault.THROTTLE)
    await wait_until(lambda: any(s.degraded for s in service.statuses.values()), timeout=20)
    dom = await anyio.to_thread.run_sync(lambda: _chromium("--dump-dom", url))
    html = dom.stdout.decode()
    assert html.count('class="badge degraded"') == 1 and "getTasks: throttled" in html
    assert "source-degraded" in html
    shot = tmp_path / "status.png"
    done = await anyio.to_thread.run_sync(
        lambda: _chromium(f"--screenshot={shot}", "--window-size=1600,900", "--hide-scrollbars", url)
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("POLLER_WRITE_STATUS_SCREENSHOT"):  # refresh the README's picture on purpose
        shutil.copy(shot, ROOT / "docs" / "status-page.png")


def test_the_nats_url_is_shown_without_any_credential() -> None:
    assert public_url("nats://poller:hunter2@nats:4222") == "nats://nats:4222"
    assert public_url("nats://s3cr3t-token@nats:4222") == "nats://nats:4222"
    assert public_url("nats://a:1@n1:4222, tls://n2:4222") == "nats://n1:4222,tls://n2:4222"


async def test_status_answers_while_nats_is_still_unreachable() -> None:
    """The page is where an operator looks first when the poller is not ready."""
    config = make_config(
        f"nats://poller:hunter2@127.0.0.1:{free_port()}",
        [],
        http={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    service = Service(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run)
        await wait_until(lambda: service.http_port is not None, timeout=10)
        assert service.http_port is not None
        doc = await _document(service.http_port)
        assert not doc.ready and "nats_connected" in doc.failing
        assert not doc.nats.connected and doc.sources == [] and doc.nats.stream_messages is None
        assert "hunter2" not in doc.nats.url and doc.nats.url.endswith(str(urlsplit(doc.nats.url).port))
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{service.http_port}/status/", allow_redirects=False) as resp,
        ):
            assert resp.status == 302 and resp.headers["Location"] == "../status"
        tg.cancel_scope.cancel()
