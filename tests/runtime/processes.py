"""Real processes for lifecycle tests: a simulator (``poller simulate``) and ``poller run``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import msgspec


def _toml(value: object) -> str:
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@contextmanager
def simulator(vendor: str = "tencent-ccc", seed: int = 5) -> Iterator[list[dict[str, Any]]]:
    """``poller simulate --vendor`` in its own process; yields the ``[[sources]]`` it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller.cli", "simulate", "--vendor", vendor, "--seed", str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not any("Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "simulate exited early"
            lines.append(line)
        yield list(tomllib.loads("".join(lines))["sources"])
    finally:
        proc.kill()
        proc.wait()


def write_config(
    path: Path, nats_url: str, sources: list[dict[str, Any]], *, extra: str = "", nats_extra: str = ""
) -> Path:
    lines = [extra, "[nats]", f"url = {_toml(nats_url)}", nats_extra, "[http]", "enabled = false"]
    for source in sources:
        lines.append("[[sources]]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in source.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class Process:
    """A ``poller`` command in its own process; output is collected by threads so reads never block."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poller.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    def wait_for(self, needle: str, timeout: float = 20.0, *, stdout: bool = False, after: int = 0) -> str:
        """The first line of stderr (or stdout), from index ``after``, that contains ``needle``."""
        lines = self.out if stdout else self.err
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in lines[after:]:
                if needle in line:
                    return line
            if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                break
            time.sleep(0.05)
        raise AssertionError(f"no {needle!r}: {self.stdout[-1500:]} {self.stderr[-3000:]}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join(5)


class Poller(Process):
    """``poller run --config``."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__("run", "--config", str(config), *args, env=env)
