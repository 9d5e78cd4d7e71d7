"""Each command's happy path and bad-input path, through the real entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest

from poller.cli import EXIT_CONFIG, build_parser, main
from poller.natsserver import NatsServer
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tail import tail, tail_subject
from tests.helpers import make_config, polls_done, running
from tests.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

GOOD = """
[nats]
url = "nats://127.0.0.1:1"
[[sources]]
vendor = "tencent-ccc"
account = "acme"
secret_id = "AKIDcli"
secret_key = { env = "CLI_SECRET" }
sdk_app_ids = [1400000001]
"""


def _poller(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command() -> None:
    out = _poller("--help").stdout
    for command in ("run", "demo", "check-config", "tail", "simulate", "bench", "schema"):
        assert command in out
    assert "Exit codes" in _poller("run", "--help").stdout


def test_check_config_redacts_secrets(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    done = _poller("check-config", str(path), env={"CLI_SECRET": "super-secret-value"})
    assert done.returncode == 0, done.stderr
    assert "super-secret-value" not in done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["sources"][0]["secret_key"] == "<redacted, from env CLI_SECRET>"
    assert shown["sources"][0]["rate_limits"] == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("sdk_app_ids = [1400000001]", "sources[0].sdk_app_ids"),
        ('account = "acme"', "sources[0].account"),
        ('url = "nats://127.0.0.1:1"', "nats.url"),
    ],
)
def test_bad_config_names_file_and_field_and_exits_2(tmp_path: Path, change: str, field: str) -> None:
    broken = {
        "sdk_app_ids = [1400000001]": 'sdk_app_ids = "not a list"',
        'account = "acme"': 'account = "has spaces"',
        'url = "nats://127.0.0.1:1"': "url = 5",
    }[change]
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(change, broken))
    for command in (["check-config", str(path)], ["run", "--config", str(path)]):
        done = _poller(*command, env={"CLI_SECRET": "x"})
        assert done.returncode == EXIT_CONFIG
        assert str(path) in done.stderr and field in done.stderr, done.stderr


def test_missing_secret_and_unknown_vendor(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD)
    env = {k: v for k, v in os.environ.items() if k != "CLI_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "poller.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == EXIT_CONFIG and "CLI_SECRET is not set" in done.stderr
    path.write_text(GOOD.replace("tencent-ccc", "nokia"))
    assert main(["check-config", str(path)]) == EXIT_CONFIG
    assert main(["check-config", str(tmp_path / "missing.toml")]) == EXIT_CONFIG


def test_schema_prints_and_asyncapi() -> None:
    assert json.loads(_poller("schema").stdout)["$defs"]["CallFinished"]
    assert json.loads(_poller("schema", "--asyncapi").stdout)["asyncapi"].startswith("3.")


def test_unknown_command_is_a_usage_error() -> None:
    assert _poller("frobnicate").returncode == 2


async def test_tail_filters_by_vendor_account_and_type(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(1400000700, state=0)
        sim.add_task(1400000700, state=0)
        config = make_config(nats_server.url, [tencent_source(sim, [1400000700])])
        async with running(config) as service:
            await polls_done(service, 1)
            sim.set_state(1400000700, task, 1)
            await polls_done(service, 2)
    out = StringIO()
    subject = tail_subject("aicc", "tencent-ccc", "tc-main", "task-status-changed")
    assert subject == "aicc.tencent-ccc.tc-main.task-status-changed"
    assert await tail(nats_server.url, subject, from_start=True, limit=1, out=out) == 1
    assert "pending(0) -> running(1)" in out.getvalue()
    out = StringIO()
    await tail(
        nats_server.url,
        tail_subject("aicc", None, None, "task-appeared"),
        from_start=True,
        limit=2,
        as_json=True,
        out=out,
    )
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()] == ["task-appeared"] * 2
    assert tail_subject("aicc", None, "acme.corp", None) == "aicc.*.acme_corp.*"


def test_simulate_prints_urls_and_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "simulate", "--seed", "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        while not any("Ctrl-C" in line for line in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        assert "tencent-ccc simulator at http://127.0.0.1:" in text
        assert "[[sources]]" in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()


def test_parser_knows_bench_arguments() -> None:
    args, extra = build_parser().parse_known_args(["bench", "--quick"])
    assert [*args.bench_args, *extra] == ["--quick"]
