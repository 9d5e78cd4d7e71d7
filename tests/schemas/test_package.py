"""The slim consumer distribution: built from schemas/, installed where only msgspec is, it decodes."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from schemas import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "schemas" / "pyproject.toml"
FIXTURES = Path(__file__).parent / "fixtures" / "events-v1.jsonl"

#: run inside the fresh venv: decode a recorded stream with the installed package alone
CONSUMER = """
import importlib.util, json, sys
import msgspec
import aicc_events
from aicc_events import Event, SCHEMA_VERSION
from aicc_events.contract import json_schema
for name in ("schemas", "poller", "aiohttp", "nats", "prometheus_client", "anyio"):
    assert importlib.util.find_spec(name) is None, name
decoder = msgspec.json.Decoder(Event)
types = [type(decoder.decode(line)).__name__ for line in open(sys.argv[1], "rb") if line.strip()]
assert json_schema()["$defs"]["CallFinished"]["properties"]["started_at"]["format"] == "date-time"
print(json.dumps({"version": SCHEMA_VERSION, "decoded": len(types), "kinds": sorted(set(types))}))
"""


def test_the_distribution_version_follows_the_schema_version() -> None:
    project = tomllib.loads(PROJECT.read_text(encoding="utf-8"))["project"]
    assert project["version"].split(".")[0] == str(SCHEMA_VERSION)
    assert project["dependencies"] == ["msgspec>=0.18.6"]


@pytest.mark.slow
def test_the_wheel_installs_with_only_msgspec_and_decodes_a_recorded_stream(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(PROJECT.parent)],
        check=True,
        timeout=120,
    )
    (wheel,) = wheels.glob("aicc_events-*.whl")
    env_dir = tmp_path / "consumer"
    venv.create(env_dir)  # no pip in it: nothing but what is installed below
    python = env_dir / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    try:
        subprocess.run(
            [*install, "--disable-pip-version-check", "msgspec"], check=True, timeout=120, capture_output=True
        )
    except subprocess.CalledProcessError as exc:  # no index reachable: nothing to install msgspec from
        pytest.skip(f"msgspec not installable into a fresh venv: {exc.stderr.decode()[-200:]}")
    subprocess.run([*install, "--no-deps", "--no-index", str(wheel)], check=True, timeout=60)
    listed = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.metadata as m; print(*(d.metadata['Name'] for d in m.distributions()))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert sorted(name.lower() for name in listed) == ["aicc-events", "msgspec"]
    run = subprocess.run(
        [str(python), "-I", "-c", CONSUMER, str(FIXTURES)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    out = run.stdout.strip()
    assert f'"version": {SCHEMA_VERSION}' in out and '"decoded": 21' in out
    assert "CallFinished" in out and "SourceRecovered" in out
