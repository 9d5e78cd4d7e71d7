"""Commits a source's state beside its polling, so the next sweep does not wait for the KV."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import anyio

from poller.pipeline.nats_faults import PermanentFault
from poller.pipeline.state import SourceState
from poller.pipeline.store import StateStore
from poller.runtime.connection import retry_nats
from poller.runtime.drain import Drains
from poller.runtime.status import SourceStatus

__all__ = ["Committer"]

log = logging.getLogger("poller.runtime")


class Committer:
    """One source's committer.

    Every event a state reflects is acked before the state is handed over, and the stream is the
    write-ahead log (:mod:`poller.pipeline.replay`): a commit that is late, or lost in a crash, only
    means more to replay on restart. States handed over while a commit runs are coalesced into one
    commit of the newest, with the union of their changed entities. Commits are shielded: on stop,
    what is pending is committed within the shutdown grace, and the grace's end cancels a commit
    still retrying (a stop cut short hands over only what its acked events say).

    A commit NATS refuses for good (a state larger than the bucket's values may be, keys the user
    may not publish to) is retried slowly; meanwhile ``status.commit_fault`` names the refusal, for
    readiness and the source's health, and ``on_refused`` is told each time.
    """

    def __init__(
        self,
        store: StateStore,
        status: SourceStatus,
        drains: Drains,
        on_commit: Callable[[str], None] | None = None,
        on_refused: Callable[[PermanentFault], None] | None = None,
    ) -> None:
        self._store = store
        self._status = status
        self._drains = drains
        self._on_commit = on_commit
        self._on_refused = on_refused
        self._state: SourceState | None = None
        self._changed: set[str] | None = set()
        self._wake = anyio.Event()
        self._closed = False
        self._busy = False

    @property
    def idle(self) -> bool:
        return self._state is None and not self._busy

    def submit(self, state: SourceState, changed: set[str] | None) -> None:
        self._state = state
        if changed is None or self._changed is None:
            self._changed = None
        else:
            self._changed |= changed
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._state is not None:
                state, changed = self._state, self._changed
                self._state, self._changed = None, set()
                self._busy = True
                try:
                    await self._commit(state, changed)
                finally:
                    self._busy = False
            if self._closed and self._state is None:
                return

    async def _commit(self, state: SourceState, changed: set[str] | None) -> None:
        status, store = self._status, self._store
        source = status.source
        with self._drains.shielded() as drain:
            await retry_nats(
                "state commit", lambda: store.commit(status.key, state, changed), on_fault=self._fault
            )
            status.last_commit = time.monotonic()
            if self._state is None:
                status.caught_up = status.last_commit
            if self._on_commit is not None:
                self._on_commit("ok")
        if drain.cancelled_caught:
            log.warning(
                "shutdown grace ran out before the state commit finished; a restart replays the stream",
                extra={"vendor": source.vendor, "account": source.account},
            )

    def _fault(self, _what: str, fault: PermanentFault | None) -> None:
        status = self._status
        if fault is None:
            status.commit_fault = status.commit_fault_since = None
            return
        if status.commit_fault is None:
            status.commit_fault_since = time.time()
        status.commit_fault = fault
        if self._on_refused is not None:
            self._on_refused(fault)
        if self._on_commit is not None:
            self._on_commit("refused")
