"""The one status protocol the operator's views read: readiness, the HTTP port and metrics.

The runtime implements :class:`StatusProvider`; nothing in ``poller.ops`` reads the runtime's
internals, so the views cannot drift from each other or depend on how the runtime is built.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = ["ServiceView", "SourceView", "StatusProvider"]


class SourceView(msgspec.Struct, frozen=True, kw_only=True):
    """One source as the runtime sees it; times are ``time.monotonic()`` readings."""

    key: str
    vendor: str
    account: str
    scope: str
    poll_interval: float
    started: float
    last_success: float | None
    degraded: bool
    #: polled by this replica now (with leases, another replica may own it)
    owned: bool = True
    #: the degradation reason of the last cycle and the vendor's words (redacted); None after a good one
    failure_reason: str | None = None
    failure: str | None = None


class ServiceView(msgspec.Struct, frozen=True, kw_only=True):
    nats_connected: bool
    stream_and_bucket: bool
    stopping: bool
    sources: list[SourceView]
    #: NATS refusals no retry can fix, as "operation: code: detail" (bad permissions, stream conflicts)
    nats_faults: list[str] = []


class StatusProvider(Protocol):
    """What the ops port needs from whatever runs the sources."""

    def status_view(self) -> ServiceView: ...

    def metrics_exposition(self) -> bytes:
        """The Prometheus text exposition, with scrape-time gauges brought up to date."""
        ...
