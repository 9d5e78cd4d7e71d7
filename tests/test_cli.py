"""Each command's happy path and bad-input path, through the real entry point."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from io import StringIO
from pathlib import Path

import anyio
import nats
import pytest

from poller.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from poller.tools.tail import tail, tail_subject
from schemas import TaskAppeared, encoder
from tests.helpers import make_config, polls_done, running, stream_events
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

COMMANDS = ("run", "demo", "check-config", "tail", "simulate", "bench", "schema")
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


def _poller(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poller.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command_and_each_has_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _poller("--help").returncode == 0
    listed = _poller("--help").stdout
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", listed, flags=re.MULTILINE), command
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        assert "Exit codes: 0" in capsys.readouterr().out, command


def test_check_config_prints_effective_toml_and_json_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    done = _poller("check-config", str(path), env={"CLI_SECRET": "super-secret-value"})
    assert done.returncode == 0, done.stderr
    assert "super-secret-value" not in done.stdout + done.stderr
    shown = tomllib.loads(done.stdout)
    source = shown["sources"][0]
    assert source["secret_key"] == {"env": "CLI_SECRET"}  # the reference, never the value
    assert source["page_size"] == 100 and shown["nats"]["stream"] == "AICC"  # defaults filled in
    assert "tencent-ccc/acme: DescribeAutoCalloutTasks 20/s" in done.stderr

    done = _poller("check-config", "--format", "json", str(path), env={"CLI_SECRET": "super-secret-value"})
    assert done.returncode == 0, done.stderr
    assert "super-secret-value" not in done.stdout + done.stderr
    assert json.loads(done.stdout)["sources"][0]["secret_key"] == {"env": "CLI_SECRET"}


def test_check_config_warns_about_inline_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inline.toml"
    path.write_text(GOOD.replace('{ env = "CLI_SECRET" }', '"inline-secret-value"'))
    assert main(["check-config", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "inline-secret-value" not in out + err
    assert 'secret_key = "<redacted>"' in out
    assert "warning: sources[0].secret_key is an inline secret" in err


@pytest.mark.parametrize(
    ("change", "broken", "field"),
    [
        ("sdk_app_ids = [1400000001]", 'sdk_app_ids = "not a list"', "sources[0].sdk_app_ids"),
        ('account = "acme"', 'account = "has spaces"', "sources[0].account"),
        ('url = "nats://127.0.0.1:1"', "url = 5", "nats.url"),
        ("[nats]", '[logging]\nlevel = "LOUD"\n[nats]', "logging.level"),
        (
            "sdk_app_ids = [1400000001]",
            "sdk_app_ids = [1400000001]\nrate_limit_margin = 2",
            "rate_limit_margin",
        ),
    ],
)
def test_bad_config_names_file_and_field_and_exits_2(
    tmp_path: Path, change: str, broken: str, field: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(change, broken))
    for command in (["check-config", str(path)], ["run", "--config", str(path)]):
        # the NATS URL points at a closed port: exiting 2 (not hanging) shows nothing was connected
        done = _poller(*command, env={"CLI_SECRET": "x"}, timeout=20)
        assert done.returncode == EXIT_CONFIG
        assert str(path) in done.stderr and field in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_missing_secret_and_unknown_vendor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert "sources[0].vendor: unknown vendor 'nokia'" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "missing.toml")]) == EXIT_CONFIG
    assert "missing.toml: cannot read" in capsys.readouterr().err


def test_schema_prints_checks_and_asyncapi() -> None:
    assert json.loads(_poller("schema").stdout)["$defs"]["CallFinished"]
    assert json.loads(_poller("schema", "--asyncapi").stdout)["asyncapi"].startswith("3.")
    assert main(["schema", "--check"]) == EXIT_OK


def test_unknown_command_and_unknown_option_are_usage_errors() -> None:
    assert _poller("frobnicate").returncode == 2
    assert _poller("check-config", "--frobnicate", "x.toml").returncode == 2


async def _publish_some_events(nats_server: NatsServer) -> None:
    sim = TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY})
    async with sim:
        task = sim.add_task(1400000700, state=0)
        sim.add_task(1400000700, state=0)
        config = make_config(nats_server.url, [tencent_source(sim, [1400000700])])
        async with running(config) as service:
            await polls_done(service, 1)
            sim.set_state(1400000700, task, 1)
            await polls_done(service, 2)


async def test_tail_from_start_filters_by_vendor_account_and_type(nats_server: NatsServer) -> None:
    await _publish_some_events(nats_server)
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


async def test_tail_live_shows_only_matching_new_events(nats_server: NatsServer) -> None:
    await _publish_some_events(nats_server)
    appeared = next(e for e in await stream_events(nats_server.url) if isinstance(e, TaskAppeared))
    payload = encoder.encode(appeared)
    out = StringIO()
    nc = await nats.connect(nats_server.url)
    try:
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                await tail(nats_server.url, tail_subject("aicc", "byrobot", None, None), limit=1, out=out)
                tg.cancel_scope.cancel()

            tg.start_soon(follow)
            # the live subscription starts at some point: keep publishing until it has seen one
            with anyio.fail_after(10):
                while True:
                    await nc.publish("aicc.tencent-ccc.tc-main.task-appeared", payload)
                    await nc.publish("aicc.byrobot.acme.task-appeared", payload)
                    await nc.flush()
                    await anyio.sleep(0.05)
    finally:
        await nc.close()
    (line,) = out.getvalue().splitlines()
    assert "task-appeared" in line and "appeared: pending(0)" in line


def test_tail_says_why_it_cannot_start(nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--server", "nats://127.0.0.1:1"]) == EXIT_FAILURE
    assert "tail: cannot connect to nats://127.0.0.1:1" in capsys.readouterr().err
    assert main(["tail", "--server", nats_server.url, "--from-start", "--stream", "NOPE"]) == EXIT_FAILURE
    assert "no stream 'NOPE'" in capsys.readouterr().err


def test_simulate_prints_urls_and_config_and_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "simulate", "--seed", "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "simulate exited early"
            lines.append(line)
        text = "".join(lines)
        assert "tencent-ccc simulator at http://127.0.0.1:" in text
        # the printed snippet is a valid config: one [[sources]] per simulator, pointing at its URL
        sources = tomllib.loads(text)["sources"]
        urls = re.findall(r"simulator at (http://\S+)", text)
        assert len(sources) >= 5 and {s["endpoint"] for s in sources} == set(urls)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_simulate_rejects_an_unknown_vendor() -> None:
    done = _poller("simulate", "--vendor", "nokia", timeout=20)
    assert done.returncode == 2 and "no simulator named 'nokia'" in done.stdout


def test_demo_shows_events_live_and_stops_cleanly() -> None:
    done = _poller("demo", "--duration", "4", "--evolve-every", "0.5", timeout=40)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "demo: nats-server at nats://" in out and "demo: tencent-ccc simulator at http://" in out
    assert re.search(r"demo: health and metrics at http://127\.0\.0\.1:\d+/healthz", out)
    event_lines = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d  \S+/\S+\s+\S", line)]
    assert len(event_lines) >= 5
    assert {line.split()[1].split("/")[0] for line in event_lines} >= {"tencent-ccc", "huawei-aicc"}
    assert out.rstrip().endswith("demo: stopped cleanly")


def test_bench_runs_the_benchmark_or_says_it_is_not_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr("poller.tools.bench.main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--only", "cpu", "--only", "publish", "--quick"]) == 0
    assert seen == [["--only", "cpu", "--only", "publish", "--quick"]]
    monkeypatch.setitem(sys.modules, "poller.tools.bench", None)  # what an install without it looks like
    assert main(["bench", "--quick"]) == EXIT_FAILURE
    assert "not built" in capsys.readouterr().err


@pytest.mark.slow  # 19 interpreter start-ups
def test_each_class_of_bad_config_exits_2_from_real_processes_before_connecting(tmp_path: Path) -> None:
    """``check-config`` and ``run`` as real processes: exit 2, file and field on stderr, and the NATS
    address (a listening socket here) never sees a connection."""
    import socket

    from tests.test_config import nats_case, strict_case, tencent_case

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    url = f"nats://127.0.0.1:{listener.getsockname()[1]}"
    classes = {
        "unknown top-level key": (strict_case(top="shutdown_grase = 3"), "shutdown_grase"),
        "misspelt table": (strict_case(top='[[source]]\nvendor = "tencent-ccc"'), "source"),
        "top-level range": (strict_case(top="shutdown_grace = -5"), "shutdown_grace"),
        "port range": (strict_case(top="[http]\nport = 70000"), "http.port"),
        "nats range": (nats_case("replicas = 0"), "nats.replicas"),
        "source range": (strict_case(source="poll_interval = -1"), "sources[0].poll_interval"),
        "vendor range": (strict_case(source="page_size = 0"), "sources[0].page_size"),
        "empty list": (tencent_case("[]"), "sources[0].sdk_app_ids"),
        "unknown source key": (strict_case(source="pol_interval = 1"), "pol_interval"),
    }
    runs: list[tuple[str, str, Path, subprocess.Popen[str]]] = []
    env = {**os.environ, "STRICT_SECRET": "s"}
    for i, (name, (text, field)) in enumerate(classes.items()):
        path = tmp_path / f"bad{i}.toml"
        path.write_text(text.replace("nats://127.0.0.1:1", url))
        for command in (["check-config", str(path)], ["run", "--config", str(path)]):
            process = subprocess.Popen(
                [sys.executable, "-m", "poller.cli", *command],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            runs.append((f"{name} ({command[0]})", field, path, process))
    # nothing enabled: a run that would poll nothing is an error too (check-config only reports it)
    idle = tmp_path / "idle.toml"
    idle.write_text(strict_case(source="enabled = false").replace("nats://127.0.0.1:1", url))
    process = subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(idle)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    runs.append(("no enabled source (run)", "sources", idle, process))
    try:
        for name, field, path, process in runs:
            _, err = process.communicate(timeout=30)
            assert process.returncode == EXIT_CONFIG, (name, err)
            assert f"{path}: " in err and field in err, (name, err)
            assert "Traceback" not in err, (name, err)
        try:
            listener.accept()
            connected = True
        except BlockingIOError:
            connected = False
        assert not connected, "a process connected to NATS before rejecting its configuration"
    finally:
        listener.close()
        for *_, process in runs:
            if process.poll() is None:
                process.kill()


# -- check-config --no-secrets over every shipped configuration (issue 12 item 8) --------------------
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def shipped_configs(tmp_path: Path) -> dict[str, Path]:
    """Every poller TOML under deploy/, and every ``*.toml`` key of a ConfigMap in deploy/'s YAML
    (written out); the notifier's own configs (``notify*.toml``) are checked by its tests."""
    import yaml

    found = {
        str(path.relative_to(DEPLOY)): path
        for path in sorted(DEPLOY.rglob("*.toml"))
        if not path.name.startswith("notify")
    }
    for path in sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(document, dict) or document.get("kind") != "ConfigMap":
                continue
            for key, text in (document.get("data") or {}).items():
                if key.endswith(".toml") and not key.startswith("notify"):
                    name = f"{path.relative_to(DEPLOY)}:{key}"
                    out = tmp_path / name.replace("/", "_").replace(":", "_")
                    out.write_text(text, encoding="utf-8")
                    found[name] = out
    return found


def test_every_shipped_config_passes_check_config_without_its_secrets(tmp_path: Path) -> None:
    configs = shipped_configs(tmp_path)
    # the glob finds what is shipped today, so a new example is covered without editing this test
    assert {"config.example.toml", "compose/poller.toml", "k8s/poller.toml"} <= set(configs)
    assert any(name.startswith("examples/") for name in configs)
    # none of the secrets they reference exists here: no env var, no /run/secrets file
    env = {k: v for k, v in os.environ.items() if not k.endswith(("SECRET", "_KEY", "_SALT", "PASSWORD"))}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "poller.cli", "check-config", "--no-secrets", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name, path in configs.items()
    }
    for name, process in processes.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == EXIT_OK, (name, err)
        assert re.search(r"ok: \d+ source\(s\), [1-9]\d* enabled", err), (name, err)
        tomllib.loads(out)  # the effective configuration, references shown as references


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ('{ env = "1NOT_A_NAME" }', "sources[0].secret_key"),
        ('{ env = "" }', "sources[0].secret_key"),
        ('{ vault = "kv/x" }', "sources[0].secret_key"),
        ('{ env = "A", file = "/b" }', "sources[0].secret_key"),
        ("42", "sources[0].secret_key"),
    ],
)
def test_no_secrets_still_checks_the_shape_of_each_reference(
    reference: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD.replace('{ env = "CLI_SECRET" }', reference))
    assert main(["check-config", "--no-secrets", str(path)]) == EXIT_CONFIG
    assert message in capsys.readouterr().err


def test_no_secrets_reads_no_secret_and_still_checks_every_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(GOOD.replace('{ env = "CLI_SECRET" }', '{ file = "/nonexistent/secret" }'))
    assert main(["check-config", "--no-secrets", str(path)]) == EXIT_OK
    assert 'secret_key = { file = "/nonexistent/secret" }' in capsys.readouterr().out
    assert main(["check-config", str(path)]) == EXIT_CONFIG  # without the flag the file must exist
    assert "cannot read secret file /nonexistent/secret" in capsys.readouterr().err
    path.write_text(GOOD.replace("[[sources]]", "shutdown_grace = -1\n[[sources]]"))
    assert main(["check-config", "--no-secrets", str(path)]) == EXIT_CONFIG
    assert "shutdown_grace" in capsys.readouterr().err
