"""The one status protocol the operator's views read: readiness, the HTTP port and metrics.

The runtime implements :class:`StatusProvider`; nothing in ``poller.ops`` reads the runtime's
internals, so the views cannot drift from each other or depend on how the runtime is built.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

__all__ = [
    "EventSummary",
    "LimitView",
    "NatsView",
    "ServiceView",
    "SourceView",
    "StatusProvider",
]


class LimitView(msgspec.Struct, frozen=True, kw_only=True):
    """One rate limiter a source draws on: requests started in the current window against the limit."""

    api: str
    in_window: int
    limit: int


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
    apis: list[str] = []
    last_poll_started: float | None = None
    last_poll_ended: float | None = None
    #: "ok" or "failed"; None before the first cycle ended
    last_outcome: str | None = None
    #: reason and detail of the last failed cycle, already redacted
    last_error: str | None = None
    last_error_at: float | None = None
    next_poll_due: float | None = None
    consecutive_failures: int = 0
    #: wall-clock seconds (epoch) the current degraded episode started; None when healthy
    degraded_since_epoch: float | None = None
    entities: int = 0
    stream_seq: int = 0
    commit_lag: float = 0.0
    limits: list[LimitView] = []
    #: the ids a detail-only source polls (Huawei); None for sources that list
    watch_list: list[str] | None = None
    #: tracked tasks (and jobs) by normalized state
    task_states: dict[str, int] = {}
    #: NATS refuses to commit this source's state for good, as "code: detail" (redacted); None
    #: once a commit is accepted again
    commit_refused: str | None = None


class EventSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One recently published event, in a line fit for an operator's screen (redacted)."""

    at_epoch: float
    vendor: str
    account: str
    type: str
    summary: str


class NatsView(msgspec.Struct, frozen=True, kw_only=True):
    """The NATS side: connection and the stream as last seen (stream facts are refreshed, not live)."""

    url: str = ""
    connected: bool = False
    stream: str = ""
    stream_messages: int | None = None
    stream_bytes: int | None = None
    stream_last_seq: int | None = None
    #: monotonic reading of the last successful stream-info refresh
    stream_checked: float | None = None


class ServiceView(msgspec.Struct, frozen=True, kw_only=True):
    nats_connected: bool
    stream_and_bucket: bool
    stopping: bool
    sources: list[SourceView]
    #: NATS refusals no retry can fix, as "operation: code: detail" (bad permissions, stream conflicts)
    nats_faults: list[str] = []
    version: str = ""
    #: monotonic and wall-clock readings taken together, so a view can turn readings into times
    taken_monotonic: float = 0.0
    taken_epoch: float = 0.0
    nats: NatsView = NatsView()
    recent_events: list[EventSummary] = []


class StatusProvider(Protocol):
    """What the ops port needs from whatever runs the sources."""

    def status_view(self) -> ServiceView: ...

    def metrics_exposition(self) -> bytes:
        """The Prometheus text exposition, with scrape-time gauges brought up to date."""
        ...
