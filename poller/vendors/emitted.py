"""The calls a source handed out in earlier cycles that are known to be published.

Call reads re-read a margin (records listed late are still found there), so the same call comes
back for a few cycles. Its event id is the same each time, so JetStream would drop the copies, but
each copy is still a publish. A source remembers what it handed out together with a cycle mark it
returns as a cursor: the runtime polls again from the state carrying that mark only after every
event of that cycle was acked, so seeing the mark proves those calls published and they are left
out of the next observations. Nothing is assumed across a restart: memory starts empty.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

__all__ = ["EmittedCalls"]


class EmittedCalls:
    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        #: call id → the second after which the re-read margin no longer reaches it, for calls
        #: whose events are acked
        self._published: dict[str, int] = {}
        #: handed out in the last cycle, not yet known acked
        self._pending: dict[str, int] = {}
        # unique per process, so a mark committed by an earlier process never matches
        self._mark = time.time_ns()

    def begin(self, committed: Mapping[str, int], until: int) -> None:
        """A new cycle from ``committed``; what is kept only until ``until`` is past the margin."""
        if self._pending and committed.get(self.cursor) == self._mark:
            self._published.update(self._pending)
        self._pending = {}
        for call_id in [c for c, keep in self._published.items() if keep <= until]:
            del self._published[call_id]

    def published(self, call_id: str) -> bool:
        return call_id in self._published

    def handed_out(self, call_id: str, keep_until: int) -> None:
        """Handed out this cycle; worth remembering until the margin's start passes ``keep_until``."""
        self._pending[call_id] = keep_until

    def mark(self) -> dict[str, int]:
        """The cursor to return with this cycle's observation."""
        self._mark += 1
        return {self.cursor: self._mark}
