"""The ids a detail-only source polls (Huawei AICC): configured, plus decisions made at run time.

Run-time decisions are committed with the source's state as cursors ``watch.<id>`` = 1 (watched) or
0 (not watched); :mod:`poller.runtime.control` takes the requests that make them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import anyio

__all__ = ["CURSOR_PREFIX", "WatchList"]

CURSOR_PREFIX = "watch."


class WatchList:
    """The ids one source polls: the configured ones plus committed and new run-time decisions."""

    def __init__(self, configured: Iterable[str]) -> None:
        self._configured = set(configured)
        #: id → watched?, for every id a run-time decision named (committed or made in this process)
        self._overrides: dict[str, bool] = {}
        self.loaded = False
        self._loaded_event: anyio.Event | None = None

    def load(self, committed: Mapping[str, int]) -> None:
        """Take the committed decisions, once per process, before any new one is made."""
        if self.loaded:
            return
        for key, value in committed.items():
            if key.startswith(CURSOR_PREFIX):
                self._overrides.setdefault(key[len(CURSOR_PREFIX) :], value != 0)
        self.loaded = True
        if self._loaded_event is not None:
            self._loaded_event.set()

    async def wait_loaded(self) -> None:
        if self.loaded:
            return
        if self._loaded_event is None:
            self._loaded_event = anyio.Event()
        await self._loaded_event.wait()

    def is_watched(self, task_id: str) -> bool:
        return self._overrides.get(task_id, task_id in self._configured)

    def watched(self) -> list[str]:
        ids = self._configured | {i for i, on in self._overrides.items() if on}
        return sorted(i for i in ids if self.is_watched(i))

    def update(self, add: Sequence[str], remove: Sequence[str]) -> tuple[list[str], list[str]]:
        """Apply one request; returns the ids it really added and removed."""
        added = [i for i in dict.fromkeys(add) if not self.is_watched(i)]
        removed = [i for i in dict.fromkeys(remove) if self.is_watched(i)]
        for task_id in added:
            self._overrides[task_id] = True
        for task_id in removed:
            self._overrides[task_id] = False
        return added, removed

    def cursors(self) -> dict[str, int]:
        return {CURSOR_PREFIX + i: int(on) for i, on in self._overrides.items()}
