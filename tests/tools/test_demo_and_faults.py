"""The demo's scripted trouble and summary, and ``poller simulate --fault`` rehearsed end to end."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections import Counter
from io import StringIO
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from poller.cli import main
from poller.tools.demo_view import DemoView
from poller.tools.natsserver import free_port
from schemas import CallFinished, CallOutcome, SourceDegraded, TaskAppeared
from schemas.enums import DegradeReason, EntityKind, TaskState
from schemas.events import Status

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d  (?P<source>\S+)\s+(?P<type>[a-z-]+)\s{2}")


def _poller(*args: str) -> list[str]:
    return [sys.executable, "-m", "poller.cli", *args]


@pytest.mark.slow
async def test_demo_shows_a_vendor_throttling_and_recovering_then_sums_up() -> None:
    with anyio.fail_after(40):
        done = await anyio.run_process(
            _poller("demo", "--duration", "12", "--episode-after", "1", "--episode-for", "6"),
            check=False,
            env=dict(os.environ),
        )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "\x1b[" not in out, "no colour into a pipe"
    lines = out.splitlines()
    events = [m for m in map(_EVENT_LINE.match, lines) if m]
    assert events
    # aligned: every type column starts at the same place
    assert len({m.start("type") for m in events}) == 1
    degraded = [m for m in events if m["type"] == "source-degraded"]
    recovered = [m for m in events if m["type"] == "source-recovered"]
    assert [m["source"] for m in degraded] == ["byrobot/demo"], degraded
    assert [m["source"] for m in recovered] == ["byrobot/demo"]
    on = lines.index("demo: fault on: byrobot answers throttle (for 6s)")
    off = lines.index("demo: fault off: byrobot answers normally again")
    assert on < lines.index(degraded[0].string) < off < lines.index(recovered[0].string)
    # the summary counts what was shown
    summary = lines[lines.index(next(line for line in lines if line.startswith("demo: summary: "))) :]
    assert summary[0] == f"demo: summary: {len(events)} event(s)"
    counted = {}
    for line in summary[1:]:
        if line.startswith("demo: calls by outcome"):
            break
        kind, count = line.split()
        counted[kind] = int(count)
    assert counted == dict(Counter(m["type"] for m in events))
    assert any(line.startswith("demo: calls by outcome (") for line in summary)
    assert lines[-1] == "demo: stopped cleanly"


def test_demo_view_colours_a_terminal_without_moving_a_column() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    events = [
        TaskAppeared(
            event_id="a",
            vendor="byrobot",
            account="演示",
            observed_at=now,
            kind=EntityKind.TASK,
            entity_id="1",
            seq=1,
            current=Status(state=TaskState.RUNNING, raw="1"),
        ),
        SourceDegraded(
            event_id="b",
            vendor="tencent-ccc",
            account="main",
            observed_at=now,
            api="X",
            reason=DegradeReason.THROTTLED,
            detail="429",
            episode=1,
        ),
        CallFinished(
            event_id="c",
            vendor="byrobot",
            account="演示",
            observed_at=now,
            call_id="9",
            task_id="1",
            outcome=CallOutcome.ANSWERED,
            raw_outcome="0",
        ),
    ]
    sources = ["byrobot/演示", "tencent-ccc/main"]
    plain = DemoView(StringIO(), sources, colour=False)
    coloured = DemoView(StringIO(), sources, colour=True)
    plain_lines = [plain.line(e) for e in events]
    coloured_lines = [coloured.line(e) for e in events]
    assert "\x1b[31msource-degraded" in coloured_lines[1] and "\x1b[" not in "".join(plain_lines)
    assert [_ANSI.sub("", line) for line in coloured_lines] == plain_lines
    assert coloured.summary()[1:] and plain.outcomes == {"answered": 1}


async def _read_until(stream: TextReceiveStream, buffer: list[str], marker: str) -> str:
    """Read lines into ``buffer`` until one contains ``marker``; returns everything read so far."""
    text = "".join(buffer)
    while marker not in text:
        text += await stream.receive()
    buffer[:] = [text]
    return text


async def _once(config: Path) -> tuple[int, str]:
    done = await anyio.run_process(
        _poller("run", "--config", str(config), "--once"), check=False, env=dict(os.environ)
    )
    return done.returncode, done.stderr.decode()


@pytest.mark.slow
async def test_simulate_fault_is_seen_by_a_real_poller_then_cleared(tmp_path: Path) -> None:
    process: Process = await anyio.open_process(
        _poller(
            "simulate",
            "--vendor",
            "tencent-ccc",
            "--fault",
            "tencent-ccc:auth",
            "--after",
            "0.5",
            "--for",
            "12",
        ),
        env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        stream = TextReceiveStream(process.stdout)
        buffer: list[str] = []
        with anyio.fail_after(40):
            printed = await _read_until(stream, buffer, "# Ctrl-C stops the simulators")
            config = tmp_path / "poller.toml"
            config.write_text(f'[nats]\nurl = "nats://127.0.0.1:{free_port()}"\n\n{printed}')
            await _read_until(stream, buffer, "fault on: tencent-ccc answers auth (for 12s)")
            code, err = await _once(config)
            assert code == 1 and "auth_failed" in err, err
            await _read_until(stream, buffer, "fault off: tencent-ccc answers normally again")
            code, err = await _once(config)
            assert code == 0, err
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_a_bad_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["--fault", "tencent:auth"],
        ["--fault", "tencent-ccc:slow"],
        ["--fault", "tencent-ccc"],
        ["--fault", "byrobot:hang", "--for", "0"],
        ["--fault", "byrobot:hang", "--vendor", "tencent-ccc"],
    ):
        assert main(["simulate", *args]) == 2, args
        captured = capsys.readouterr()
        assert "--fault" in captured.err + captured.out, args
