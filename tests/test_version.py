"""``poller --version`` and the version the build_info metric reports are one and the same."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from prometheus_client import generate_latest

from poller import __version__
from poller.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag_prints_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "poller.cli", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"poller {__version__} ")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == declared


def test_build_info_metric_carries_the_version() -> None:
    text = generate_latest(Metrics().registry).decode()
    assert f'aicc_build_info{{python="{sys.version.split()[0]}",version="{__version__}"}} 1.0' in text
    assert "process_cpu_seconds_total" in text and "python_info" in text
