#!/usr/bin/env python3
"""The two commands a newcomer needs. Only Python >= 3.11 and pip are assumed.

    python3 dev.py demo   set up .venv, then run the demo (local NATS, simulators, poller, live events)
    python3 dev.py test   set up .venv, then lint, type-check and run the test suite (3 workers)

Extra arguments after the command go to ``poller demo`` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*cmd: str) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def ensure_venv(extra: str) -> None:
    """Create .venv and install the project; skipped when pyproject.toml has not changed since."""
    stamp = VENV / f".installed-{extra or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(BIN / "python")
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "pip")
    target = f".[{extra}]" if extra else "."
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target)
    stamp.write_text(digest)


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - the one check this script exists to make early
        sys.exit(f"Python >= 3.11 is needed, this is {sys.version.split()[0]}")
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        sys.exit(__doc__)
    command, rest = sys.argv[1], sys.argv[2:]
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        if command == "demo":
            ensure_venv("")
            os.execv(str(BIN / "poller"), [str(BIN / "poller"), "demo", *rest])
        ensure_venv("dev")
        _run(str(BIN / "ruff"), "check", "poller", "schemas", "tests", "dev.py")
        _run(str(BIN / "mypy"), "--strict", "poller", "schemas")
        # most tests wait on real processes and clocks, not on the CPU: three workers, one file each
        # at a time (a file's tests share their timing assumptions), keep the suite within minutes
        _run(str(BIN / "python"), "-m", "pytest", "-n", "3", "--dist", "loadfile", *rest)
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)


if __name__ == "__main__":
    main()
