"""Measurements that need a process of their own: how the parent starts one and reads its answer."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TypeVar

import anyio
import msgspec

from poller.tools.bench.sizes import PACKAGE_ROOT

__all__ = ["child_command", "child_env", "child_line", "run_child"]

T = TypeVar("T")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def child_command(args: Sequence[str]) -> list[str]:
    # -P: the working directory must not shadow the tree this bench runs from (PACKAGE_ROOT)
    return [sys.executable, "-P", "-m", "poller.tools.bench", "--child", *args]


def child_line(message: str) -> None:
    """A subprocess's progress goes to stderr (inherited): stdout carries its result."""
    print(f"           {message}", file=sys.stderr, flush=True)


async def run_child(args: list[str], kind: type[T]) -> T:
    done = await anyio.run_process(child_command(args), stderr=None, env=child_env())
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=kind)
