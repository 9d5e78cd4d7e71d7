"""What the runtime knows of one source while it runs: read by readiness, metrics and status."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from poller.vendors.base import Source

__all__ = ["SourceStatus"]


@dataclass
class SourceStatus:
    """What readiness and operators need to know about one source."""

    source: Source
    key: str
    last_success: float | None = None
    last_commit: float | None = None
    degraded: bool = False
    #: why the last cycle failed (a DegradeReason value), None after a good one
    failing_reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    #: the last time nothing this source observed was waiting to be committed (commit lag = now - this);
    #: a quiet source commits nothing, so "time since the last commit" would alert falsely
    caught_up: float = field(default_factory=time.monotonic)
