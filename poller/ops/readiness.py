"""The ``/readyz`` verdict, computed from the status protocol alone."""

from __future__ import annotations

import time

import msgspec

from poller.ops.status import ServiceView
from schemas import DegradeReason

__all__ = ["STARTUP_GRACE", "Readiness", "readiness"]

#: a source that has never succeeded is given this long after start before it counts as not ready
STARTUP_GRACE = 60.0


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """The /readyz body: the verdict, the checks that failed by name, and the facts behind them."""

    ready: bool
    #: names of the failed checks: nats_connected, stream_and_bucket, sources_fresh, not_stopping,
    #: nats_accepts (NATS refuses something for good), events_accepted (a source's events are refused)
    failing: list[str]
    nats_connected: bool
    stream_and_bucket: bool
    stale_sources: list[str]
    stopping: bool
    nats_faults: list[str] = []
    rejected_sources: list[str] = []


def readiness(view: ServiceView, now: float | None = None) -> Readiness:
    now = time.monotonic() if now is None else now
    stale = []
    for source in view.sources:
        allowed = max(3 * source.poll_interval, 30.0)
        if source.last_success is None:
            if now - source.started > max(STARTUP_GRACE, allowed):
                stale.append(source.key)
        elif now - source.last_success > allowed:
            stale.append(source.key)
    rejected = sorted(s.key for s in view.sources if s.failing_reason == DegradeReason.PUBLISH_REJECTED)
    checks = {
        "nats_connected": view.nats_connected,
        "stream_and_bucket": view.stream_and_bucket,
        "sources_fresh": not stale,
        "not_stopping": not view.stopping,
        "nats_accepts": not view.nats_faults,
        "events_accepted": not rejected,
    }
    failing = [name for name, passed in checks.items() if not passed]
    return Readiness(
        ready=not failing,
        failing=failing,
        nats_connected=view.nats_connected,
        stream_and_bucket=view.stream_and_bucket,
        stale_sources=sorted(stale),
        stopping=view.stopping,
        nats_faults=list(view.nats_faults),
        rejected_sources=rejected,
    )
