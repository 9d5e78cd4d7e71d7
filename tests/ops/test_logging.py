"""One JSON object per line with context fields; secrets and phone numbers masked as a last defense."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest

from poller.ops.logs import check, configure
from poller.pipeline.redact import Redactor
from poller.simulators.base import Fault
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer, free_port
from tests.helpers import wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY

APP = 1400000800


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_with_context_and_redaction(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure("DEBUG", "json", stream)
    log = logging.getLogger("poller.test")
    log.info(
        "poll cycle failed",
        extra={"vendor": "byrobot", "account": "acme", "api": "getTasks", "attempt": 2},
    )
    log.warning("callee 13512345678 did not answer")  # must never happen; masked if it does
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("adapter failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["level"] for entry in lines] == ["info", "warning", "error"]
    first = lines[0]
    assert (first["vendor"], first["account"], first["api"], first["attempt"]) == (
        "byrobot",
        "acme",
        "getTasks",
        2,
    )
    assert first["logger"] == "poller.test" and first["ts"].endswith("+00:00")
    assert "13512345678" not in stream.getvalue() and "135******78" in lines[1]["message"]
    assert "ValueError: boom" in lines[2]["error"]


@pytest.mark.parametrize(
    ("leaked", "kept"),
    [
        ("call to +86 135-1234-5678 failed", "call to 861********78 failed"),
        ("call to 8613512345678 failed", "call to 861********78 failed"),
        ("callee 135 1234 5678", "callee 135******78"),
        ("GET /x?AccessKeyId=LTAIabc&Signature=c2lnbmF0dXJl&Version=1", "Signature=<redacted>&Version=1"),
        ('body {"access_token": "eyJhbGciOi", "expires_in": 1800}', '"access_token": "<redacted>"'),
        ("Authorization: Bearer abcdef.ghijkl.mnop", "Bearer <redacted>"),
        ("app_secret=s3cr3t-value", "app_secret=<redacted>"),
        ("password: hunter2hunter2", "password: <redacted>"),
        ("nats: connect to nats://poller:pa55word@nats:4222 failed", "nats://poller:<redacted>@nats:4222"),
    ],
)
def test_redactor_masks_what_looks_like_a_secret_or_a_phone(leaked: str, kept: str) -> None:
    masked = Redactor()(leaked)
    assert kept in masked, masked


def test_redactor_leaves_ordinary_lines_alone() -> None:
    line = (
        '{"message": "token refresh failed", "token_path": "/baas/auth", "api": "getTasks", '
        '"page": 120, "detail": "SignatureDoesNotMatch", "ts": "2026-01-01T00:00:00.000+00:00"}'
    )
    assert Redactor()(line) == line


def test_numbers_we_log_as_numbers_are_kept_and_digit_runs_in_text_are_masked(
    restore_root_logging: None,
) -> None:
    """A ten-digit SdkAppId passed as a number is our own context; the same digits inside a vendor's
    message cannot be told from a phone number and are masked."""
    stream = io.StringIO()
    configure("INFO", "json", stream)
    logging.getLogger("poller.test").warning(
        "vendor said: app 1400000001 unknown",
        extra={
            "sdk_app_id": 1400000001,
            "scope": "1400000001",
            "detail": "app 1400000001",
            "api": "token=abcdef",
        },
    )
    entry = json.loads(stream.getvalue())
    assert entry["sdk_app_id"] == 1400000001 and entry["message"] == "vendor said: app 140*****01 unknown"
    # identities are ours (as in events) and keep their digits; credentials are masked everywhere
    assert entry["scope"] == "1400000001" and entry["detail"] == "app 140*****01"
    assert entry["api"] == "token=<redacted>"


def test_configured_secret_values_are_masked_in_every_format(restore_root_logging: None) -> None:
    for fmt in ("json", "text"):
        stream = io.StringIO()
        configure("INFO", fmt, stream, secrets=["the-configured-secret", "ab"])
        logging.getLogger("poller.test").warning(
            "signature made with the-configured-secret", extra={"vendor": "tencent-ccc", "detail": "ab"}
        )
        text = stream.getvalue()
        assert "the-configured-secret" not in text and "<redacted>" in text, text
        assert "vendor=tencent-ccc" in text if fmt == "text" else json.loads(text)["vendor"] == "tencent-ccc"
        assert "ab" in text  # too short to be a secret: ordinary words are not masked


def test_level_and_format_are_checked() -> None:
    assert check("info", "json") is None and check("WARNING", "text") is None
    assert (check("LOUD", "json") or "").startswith("logging.level:")
    assert (check("INFO", "xml") or "").startswith("logging.format:")
    with pytest.raises(ValueError, match=r"logging\.level"):
        configure("LOUD")


async def test_logs_of_a_real_run_are_json_lines_without_secrets(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """``poller run`` as an operator starts it: JSON lines on stderr, failures logged with context,
    the secret from the environment nowhere, SIGTERM drains and exits 0."""
    sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    async with sim:
        sim.add_task(APP, state=1)
        port = free_port()
        config = tmp_path / "poller.toml"
        config.write_text(
            f"""
[nats]
url = "{nats_server.url}"
[http]
host = "127.0.0.1"
port = {port}
[logging]
level = "DEBUG"
format = "json"
[[sources]]
vendor = "tencent-ccc"
account = "logs"
secret_id = "{SECRET_ID}"
secret_key = {{ env = "LOG_TEST_SECRET" }}
sdk_app_ids = [{APP}]
endpoint = "{sim.url}"
poll_interval = 0.05
retries = 0
failure_backoff = 0.1
"""
        )
        env = {**os.environ, "LOG_TEST_SECRET": SECRET_KEY, "PYTHONPATH": os.getcwd()}
        stderr = bytearray()
        async with await anyio.open_process(
            [sys.executable, "-m", "poller.cli", "run", "--config", str(config)], env=env
        ) as process:
            assert process.stderr is not None

            async def collect() -> None:
                assert process.stderr is not None
                async for chunk in process.stderr:
                    stderr.extend(chunk)

            async def ready() -> bool:
                try:
                    async with (
                        aiohttp.ClientSession() as http,
                        http.get(f"http://127.0.0.1:{port}/readyz") as resp,
                    ):
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            async with anyio.create_task_group() as tg:
                tg.start_soon(collect)
                await wait_until(ready, timeout=20)
                sim.inject(Fault.AUTH)
                await wait_until(lambda: b"poll cycle failed" in stderr, timeout=15)
                sim.clear_faults()
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(15):
                    assert await process.wait() == 0
    text = stderr.decode()
    assert SECRET_KEY not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "message"} <= set(entry) for entry in lines)
    by_message = {entry["message"]: entry for entry in lines}
    assert by_message["poller started"]["sources"] == 1
    failed = by_message["poll cycle failed"]
    assert (failed["vendor"], failed["account"], failed["reason"]) == ("tencent-ccc", "logs", "auth_failed")
    # the fault hits every API: the cycle fails at whichever of its reads comes first after it
    assert failed["api"] in ("DescribeAutoCalloutTasks", "DescribeAutoCalloutTask", "DescribeTelCdr")
    assert lines[-1]["message"] == "poller stopped"
