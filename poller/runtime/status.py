"""What the runtime knows of one source while it runs: read by readiness, metrics and status."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from poller.pipeline.nats_faults import PermanentFault
from poller.pipeline.state import VANISHED, SourceState
from poller.vendors.base import Source
from schemas import EntityKind

__all__ = ["SourceStatus"]


@dataclass
class SourceStatus:
    """What readiness and operators need to know about one source."""

    source: Source
    key: str
    last_success: float | None = None
    last_commit: float | None = None
    degraded: bool = False
    #: another writer committed this source's state: this process stopped polling it
    fenced: bool = False
    #: this process polls the source now (static sharding: always; leases: while it holds the lease)
    owned: bool = False
    #: why the last cycle failed (degradation reason; the vendor's words, redacted); None after a good one
    failure_reason: str | None = None
    failure: str | None = None
    started: float = field(default_factory=time.monotonic)
    #: the last time nothing this source observed was waiting to be committed (commit lag = now - this);
    #: a quiet source commits nothing, so "time since the last commit" would alert falsely
    caught_up: float = field(default_factory=time.monotonic)
    last_poll_started: float | None = None
    last_poll_ended: float | None = None
    last_outcome: str | None = None
    #: "reason: detail" of the last failed cycle, unredacted (the views redact what they show)
    last_error: str | None = None
    last_error_at: float | None = None
    next_poll_due: float | None = None
    consecutive_failures: int = 0
    degraded_since_epoch: float | None = None
    entities: int = 0
    stream_seq: int = 0
    #: NATS refuses to commit this source's state for good, and since when (epoch seconds); None
    #: once a commit is accepted again
    commit_fault: PermanentFault | None = None
    commit_fault_since: float | None = None
    #: the state as of the last cycle (a cycle replaces it, never mutates it): read at scrape time
    state: SourceState = field(default_factory=SourceState)
    _campaigns: tuple[SourceState, dict[str, int]] | None = field(default=None, repr=False)

    def cycle_done(
        self,
        *,
        started: float,
        failure: tuple[str, str, str] | None,
        state: SourceState,
        delay: float,
    ) -> None:
        """Record one finished cycle: the facts the status page and ``poller status`` show."""
        now = time.monotonic()
        self.last_poll_started = started
        self.last_poll_ended = now
        self.next_poll_due = now + delay
        if failure is None:
            self.last_outcome = "ok"
            self.consecutive_failures = 0
        else:
            api, reason, detail = failure
            self.last_outcome = "failed"
            self.consecutive_failures += 1
            self.last_error = f"{api}: {reason}: {detail}"
            self.last_error_at = now
        health = state.health
        self.degraded_since_epoch = health.since if health.degraded else None
        self.entities = len(state.entities)
        self.stream_seq = state.stream_seq
        self.state = state

    def campaign_states(self) -> dict[str, int]:
        """Tracked campaigns (tasks, job groups) by normalized state.

        Counted when first asked after a cycle, not per cycle: a scrape, a probe and the status page
        asking about the same state share one count.
        """
        state = self.state
        cached = self._campaigns
        if cached is not None and cached[0] is state:
            return cached[1]
        counts = dict(
            Counter(
                entity.state
                for entity in state.entities.values()
                if entity.kind in _CAMPAIGN_KINDS and entity.state != VANISHED
            )
        )
        self._campaigns = (state, counts)
        return counts


_CAMPAIGN_KINDS = frozenset({EntityKind.TASK.value, EntityKind.JOB_GROUP.value})
