"""The ``/readyz`` verdict, computed from the status protocol alone.

Readiness means *this process can do its job*: NATS connected, stream and state bucket set up, not
stopping. A vendor that fails or hangs does not make the poller unready: no restart or re-route
fixes a vendor, and an unready pod stalls a StatefulSet rollout and (with the PDB) node drains.
Vendor trouble is reported by ``source-degraded`` events, the ``aicc_source_degraded`` metric and
this body, which names every source that is failing, stale or has never succeeded.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from poller.ops.status import ServiceView, SourceView
from schemas import DegradeReason

__all__ = ["Readiness", "SourceProblem", "readiness", "stale_after"]

Problem = Literal["failing", "stale", "never_succeeded"]


class SourceProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One source that is not delivering: why, in the vendor's (redacted) words when it failed."""

    key: str
    vendor: str
    account: str
    scope: str
    #: failing: its last cycle failed; stale: no good cycle for a while (e.g. a hung vendor);
    #: never_succeeded: no good cycle since start
    problem: Problem
    reason: str | None = None
    detail: str | None = None
    #: seconds since its last good cycle (since start when it never had one)
    seconds_without_success: float


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """The /readyz body: the verdict, the checks that failed by name, and the sources in trouble."""

    ready: bool
    #: names of the failed checks: nats_connected, stream_and_bucket, not_stopping, nats_accepts
    #: (NATS refuses something for good), events_accepted (a source's events are refused),
    #: states_committed (a source's state commit is refused)
    failing: list[str]
    nats_connected: bool
    stream_and_bucket: bool
    stopping: bool
    sources_ok: int
    #: every source that is failing, stale or has never succeeded (does not affect ``ready``)
    sources_failing: list[SourceProblem]
    #: what NATS refuses for good (credentials, permissions, stream config), by operation
    nats_faults: list[str] = []
    #: sources whose events NATS refuses (too large, no permission on the subject)
    rejected_sources: list[str] = []
    #: sources whose state NATS refuses to commit (values larger than the bucket takes); their
    #: events still flow, but a restart replays ever more of the stream
    uncommitted_sources: list[str] = []


def stale_after(source: SourceView) -> float:
    """How long without a good cycle before a source counts as stale."""
    return max(3 * source.poll_interval, 30.0)


def _problem(source: SourceView, now: float) -> SourceProblem | None:
    if not source.owned:
        return None  # another replica polls it (leases): its trouble is in that replica's body
    since = source.last_success if source.last_success is not None else source.started
    quiet = now - since
    problem: Problem
    if source.failure_reason is not None or source.degraded:
        problem = "failing"
    elif source.last_success is None:
        problem = "never_succeeded"
    elif quiet > stale_after(source):
        problem = "stale"
    else:
        return None
    return SourceProblem(
        key=source.key,
        vendor=source.vendor,
        account=source.account,
        scope=source.scope,
        problem=problem,
        reason=source.failure_reason,
        detail=source.failure,
        seconds_without_success=round(max(0.0, quiet), 3),
    )


def readiness(view: ServiceView, now: float | None = None) -> Readiness:
    now = time.monotonic() if now is None else now
    problems = [p for p in (_problem(source, now) for source in view.sources) if p is not None]
    rejected = sorted(s.key for s in view.sources if s.failure_reason == DegradeReason.PUBLISH_REJECTED)
    uncommitted = sorted(s.key for s in view.sources if s.owned and s.commit_refused is not None)
    checks = {
        "nats_connected": view.nats_connected,
        "stream_and_bucket": view.stream_and_bucket,
        "not_stopping": not view.stopping,
        "nats_accepts": not view.nats_faults,
        "events_accepted": not rejected,
        "states_committed": not uncommitted,
    }
    failing = [name for name, passed in checks.items() if not passed]
    return Readiness(
        ready=not failing,
        failing=failing,
        nats_connected=view.nats_connected,
        stream_and_bucket=view.stream_and_bucket,
        stopping=view.stopping,
        sources_ok=len(view.sources) - len(problems),
        sources_failing=sorted(problems, key=lambda p: p.key),
        nats_faults=list(view.nats_faults),
        rejected_sources=rejected,
        uncommitted_sources=uncommitted,
    )
