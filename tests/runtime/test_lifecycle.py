"""The process lifecycle on real processes: signals, a lost NATS connection at stop."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.tools.natsserver import NatsServer
from tests.runtime.processes import Poller, Process, simulator, write_config


@pytest.fixture(scope="module")
def tencent() -> Iterator[list[dict[str, Any]]]:
    with simulator("tencent-ccc") as sources:
        yield sources


def test_sigterm_while_nats_is_lost_exits_zero_without_traceback(
    tmp_path: Path, tencent: list[dict[str, Any]]
) -> None:
    with NatsServer() as server:
        config = write_config(tmp_path / "p.toml", server.url, tencent, extra="shutdown_grace = 2.0")
        poller = Poller(config)
        try:
            poller.wait_for("poller started")
            server.kill()
            poller.wait_for("NATS disconnected")

            time.sleep(2)
            poller.signal(signal.SIGTERM)
            assert poller.wait(15) == 0, poller.stderr[-3000:]
            assert "Traceback" not in poller.stderr
            poller.wait_for("poller stopped")
        finally:
            poller.kill()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_second_sigterm_while_draining_exits_143_at_once(
    tmp_path: Path, tencent: list[dict[str, Any]]
) -> None:
    with NatsServer() as server:
        config = write_config(tmp_path / "p.toml", server.url, tencent, extra="shutdown_grace = 10.0")
        poller = Poller(config)
        assert server.process is not None
        try:
            poller.wait_for("poller started")
            server.process.send_signal(signal.SIGSTOP)  # NATS stalls: the drain cannot finish soon
            poller.signal(signal.SIGTERM)
            poller.wait_for("stop signal: draining")
            started = time.monotonic()
            poller.signal(signal.SIGTERM)
            assert poller.wait(10) == 143, poller.stderr[-3000:]
            assert time.monotonic() - started < 3.0
            assert "Traceback" not in poller.stderr
            assert poller.stderr.count("exiting now") == 1
        finally:
            server.process.send_signal(signal.SIGCONT)
            poller.kill()


def test_demo_second_ctrl_c_exits_130_and_leaves_no_nats_server_or_store(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    demo = Process("demo", "--evolve-every", "0.5", env=env)
    try:
        demo.wait_for("demo: health and metrics at", stdout=True, timeout=30)  # the poller started
        (nats_pid,) = [pid for pid in _children(demo.proc.pid) if "nats-server" in _cmdline(pid)]
        assert [p.name for p in tmp_path.glob("aicc-nats-*")]
        os.kill(nats_pid, signal.SIGSTOP)  # a stalled NATS keeps the graceful stop busy
        demo.signal(signal.SIGINT)
        demo.wait_for("demo: stopping", stdout=True)
        demo.signal(signal.SIGINT)
        assert demo.wait(10) == 130, demo.stderr[-3000:]
        assert "Traceback" not in demo.stderr
        assert demo.stderr.count("exiting now") == 1
        assert not _alive(nats_pid)
        assert not list(tmp_path.glob("aicc-nats-*"))
    finally:
        demo.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
