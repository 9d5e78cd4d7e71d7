"""The process lifecycle on real processes: signals, a lost NATS connection at stop."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poller.tools.natsserver import NatsServer
from tests.runtime.processes import Poller, simulator, write_config


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
