"""``poller run --config FILE --once`` as a real process against the simulators, with no NATS at all."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import msgspec

from poller.simulators.base import Fault
from poller.simulators.registry import DemoSetup, demo_setups
from poller.tools.natsserver import free_port
from schemas import Event, TaskAppeared
from schemas.events import event_type


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _config(path: Path, sources: list[dict[str, Any]]) -> Path:
    # nothing listens on this NATS port: --once must never need it
    lines = ["[nats]", f'url = "nats://127.0.0.1:{free_port()}"', "", "[logging]", 'level = "WARNING"', ""]
    for source in sources:
        lines.append("[[sources]]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in source.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


async def _once(config: Path) -> tuple[int, list[Event], str]:
    done = await anyio.run_process(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config), "--once"],
        check=False,
        env=dict(os.environ),
    )
    decoder = msgspec.json.Decoder(Event)
    events = [decoder.decode(line) for line in done.stdout.splitlines()]
    return done.returncode, events, done.stderr.decode()


async def _started(seed: int) -> tuple[dict[str, DemoSetup], list[dict[str, Any]]]:
    setups = demo_setups(seed)
    sources: list[dict[str, Any]] = []
    for setup in setups.values():
        await setup.simulator.start()
        sources.extend(setup.sources(setup.simulator.url))
    return setups, sources


async def test_once_prints_every_source_s_events_and_exits_0(tmp_path: Path) -> None:
    setups, sources = await _started(seed=5)
    try:
        with anyio.fail_after(60):
            code, events, err = await _once(_config(tmp_path / "poller.toml", sources))
    finally:
        for setup in setups.values():
            await setup.simulator.stop()
    assert code == 0, err
    appeared = Counter(e.vendor for e in events if isinstance(e, TaskAppeared))
    assert set(appeared) == set(setups), appeared
    assert not [e for e in events if event_type(e) == "source-degraded"]
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), "no event twice"
    assert err.count("\nok ") + err.startswith("ok ") == 7, err
    assert "every source answered; nothing was published or committed" in err


async def test_once_names_the_failing_source_and_exits_1(tmp_path: Path) -> None:
    setups, sources = await _started(seed=5)
    setups["tencent-ccc"].simulator.inject(Fault.AUTH)
    try:
        with anyio.fail_after(60):
            code, events, err = await _once(_config(tmp_path / "poller.toml", sources))
    finally:
        for setup in setups.values():
            await setup.simulator.stop()
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2 and all("tencent-ccc.demo." in line and "auth_failed" in line for line in failed)
    assert "2 of 7 source(s) failed" in err
    degraded = [e for e in events if event_type(e) == "source-degraded"]
    assert {e.vendor for e in degraded} == {"tencent-ccc"}
    # the others still answered, and their events are all there
    assert {e.vendor for e in events if isinstance(e, TaskAppeared)} == set(setups) - {"tencent-ccc"}
    assert "Traceback" not in err
