"""A lasting fault repeats the same warning: the first one, then a count at growing intervals."""

from __future__ import annotations

import io
import itertools
import json
import logging
import signal
import time
from pathlib import Path

from poller.ops.logs import JsonFormatter, RepeatSummary
from poller.tools.natsserver import free_port
from tests.runtime.processes import Poller, write_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _logger(clock: Clock) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatSummary(first_interval=5.0, max_interval=60.0, quiet=600.0, clock=clock))
    logger = logging.getLogger(f"poller.test.repeats.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_one_warning_a_second_for_ten_minutes_is_a_few_lines_that_count_every_one() -> None:
    clock = Clock()
    log, stream = _logger(clock)
    for attempt in range(600):
        log.warning("publish not acked, retrying", extra={"attempt": attempt, "error": "TimeoutError"})
        clock.now += 1.0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # first, then after 5, 10, 20, 40, 60, 60 ... seconds
    assert 5 <= len(lines) <= 16
    assert "repeated" not in lines[0] and lines[0]["attempt"] == 0
    assert lines[1]["repeated"] == 4 and lines[1]["message"].endswith("(4 more in the last 5 s)")
    gaps = [b["attempt"] - a["attempt"] for a, b in itertools.pairwise(lines)]
    assert gaps[:4] == [5, 10, 20, 40] and max(gaps) == 60
    # nothing is lost from the count: the lines shown plus the ones they summarize are all 600,
    # except those still waiting for the next summary
    shown = len(lines) + sum(line.get("repeated", 0) for line in lines)
    assert 600 - 60 < shown <= 600


def test_different_warnings_and_other_levels_are_not_held_back() -> None:
    clock = Clock()
    log, stream = _logger(clock)
    for _ in range(3):
        log.warning("poll cycle failed", extra={"vendor": "tencent-ccc", "reason": "timeout"})
        log.warning("poll cycle failed", extra={"vendor": "byrobot", "reason": "timeout"})
        log.warning("poll cycle failed", extra={"vendor": "byrobot", "reason": "auth_failed"})
        log.info("poller started")
        clock.now += 1.0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warnings = [(line["vendor"], line["reason"]) for line in lines if line["level"] == "warning"]
    assert warnings == [("tencent-ccc", "timeout"), ("byrobot", "timeout"), ("byrobot", "auth_failed")]
    assert sum(line["level"] == "info" for line in lines) == 3


def test_after_a_quiet_spell_the_same_warning_is_new_and_reports_what_was_left_out() -> None:
    clock = Clock()
    log, stream = _logger(clock)
    for _ in range(3):
        log.warning("NATS disconnected")
        clock.now += 1.0
    clock.now += 3600
    log.warning("NATS disconnected")
    log.warning("NATS disconnected")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("repeated") for line in lines] == [None, 2]


def test_a_real_poller_waiting_for_nats_does_not_log_a_line_a_second(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens: the first connect keeps failing
    source = {
        "vendor": "tencent-ccc",
        "account": "flood",
        "secret_id": "AKIDflood",
        "secret_key": "flood-secret-key",
        "sdk_app_ids": [1400000001],
        "endpoint": "http://127.0.0.1:9",
    }
    poller = Poller(write_config(tmp_path / "p.toml", url, [source]))
    try:
        poller.wait_for("NATS")
        time.sleep(5.5)
        poller.signal(signal.SIGTERM)
        assert poller.wait(15) == 0, poller.stderr[-2000:]
    finally:
        poller.kill()
    nats_lines = [json.loads(line) for line in poller.err if '"NATS' in line or "NATS" in line]
    # one attempt a second: 6 lines before; now the first and one summary of the next 5 s
    assert 1 <= len(nats_lines) <= 2, poller.stderr
    assert sum(1 + line.get("repeated", 0) for line in nats_lines) >= 4
