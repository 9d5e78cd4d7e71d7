"""Prometheus metrics. One registry per service instance, so several can live in one process (tests)."""

from __future__ import annotations

import platform

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from poller import __version__
from schemas import CallOutcome, TaskState

#: states a campaign is put in by the vendor's system, not by an operator (alerts watch these)
ALERTED_TASK_STATES = tuple(
    state.value for state in (TaskState.FAILED, TaskState.PAUSED_BY_SYSTEM, TaskState.CANCELLED_BY_SYSTEM)
)

#: call outcomes that mean the calling line, not the callee, is failing
ALERTED_CALL_OUTCOMES = tuple(
    outcome.value for outcome in (CallOutcome.CALLER_IN_ARREARS, CallOutcome.CALLER_NUMBER_UNAVAILABLE)
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "aicc_vendor_requests", "Vendor API requests by outcome", ["vendor", "api", "outcome"], registry=r
        )
        self.request_seconds = Histogram(
            "aicc_vendor_request_seconds",
            "Vendor API request duration",
            ["vendor", "api"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.throttled = Counter(
            "aicc_vendor_throttled", "Throttling answers from vendors", ["vendor", "api"], registry=r
        )
        self.limiter_in_window = Gauge(
            "aicc_ratelimit_in_window",
            "Requests started in the current one-second window",
            ["vendor", "api", "credential"],
            registry=r,
        )
        self.limiter_limit = Gauge(
            "aicc_ratelimit_limit",
            "Effective request limit per second",
            ["vendor", "api", "credential"],
            registry=r,
        )
        self.poll_cycle_seconds = Histogram(
            "aicc_poll_cycle_seconds",
            "Duration of one poll cycle of one source",
            ["vendor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.poll_cycles = Counter(
            "aicc_poll_cycles", "Poll cycles by result", ["vendor", "account", "result"], registry=r
        )
        self.detection_lag = Histogram(
            "aicc_detection_lag_seconds",
            "Poll cycle start to event acked (upper bound of detection lag)",
            ["vendor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter("aicc_events", "Events published", ["vendor", "account", "type"], registry=r)
        self.calls = Counter(
            "aicc_calls", "Finished calls published, by outcome", ["vendor", "account", "outcome"], registry=r
        )
        self.task_transitions = Counter(
            "aicc_task_transitions",
            "Tasks and job groups that changed into a state (task-status-changed events published)",
            ["vendor", "account", "state"],
            registry=r,
        )
        self.tasks = Gauge(
            "aicc_tasks",
            "Tracked campaigns (tasks, job groups) by normalized state",
            ["vendor", "account", "state"],
            registry=r,
        )
        self.publish_seconds = Histogram(
            "aicc_publish_seconds", "Publish to JetStream ack", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.publish_failures = Counter(
            "aicc_publish_failures", "Publishes not acked (retried with the same id)", registry=r
        )
        self.commit_lag = Gauge(
            "aicc_state_commit_lag_seconds",
            "Seconds since the source's state was last committed",
            ["vendor", "account", "scope"],
            registry=r,
        )
        self.commits = Counter("aicc_state_commits", "State commits", ["vendor", "result"], registry=r)
        self.fenced = Counter(
            "aicc_state_fenced",
            "Sources this process stopped polling because another writer committed their state",
            ["vendor", "account", "scope"],
            registry=r,
        )
        self.entities = Gauge(
            "aicc_entities_tracked", "Entities in committed state", ["vendor", "account", "scope"], registry=r
        )
        self.source_degraded = Gauge(
            "aicc_source_degraded",
            "1 while a source is in a degraded episode",
            ["vendor", "account", "scope"],
            registry=r,
        )
        self.vanish_held = Gauge(
            "aicc_vanish_held",
            "Entities a complete listing lost in bulk, waiting for the next complete listing to agree",
            ["vendor", "account", "scope"],
            registry=r,
        )
        self.nats_connected = Gauge("aicc_nats_connected", "1 while connected to NATS", registry=r)
        self.nats_refusals = Counter(
            "aicc_nats_refusals",
            "NATS refusals no retry can fix (payload too large, permission, stream conflict), by operation",
            ["operation", "code"],
            registry=r,
        )
        self.read_requests = Counter(
            "aicc_read_requests",
            "Requests per kind of read (targeted, by_id, relist, full): the read scheduler's split",
            ["vendor", "account", "scope", "kind"],
            registry=r,
        )
        self.read_staleness = Gauge(
            "aicc_read_staleness_seconds",
            "Seconds since the start of the last complete relist: no entity's last read is older",
            ["vendor", "account", "scope"],
            registry=r,
        )
        self.read_filter_mismatches = Counter(
            "aicc_read_filter_mismatches",
            "Entities a status-filtered listing returned with another status, by verdict (moved: changed "
            "since the cycle began; ignored: the filter is not applied, full listings for a cool-down)",
            ["vendor", "account", "scope", "verdict"],
            registry=r,
        )
        self.read_filter_distrusted = Gauge(
            "aicc_read_filter_distrusted_seconds",
            "Seconds before targeted reads resume after a status filter was ignored (0: relied on)",
            ["vendor", "account", "scope"],
            registry=r,
        )
        self.degradations = Counter(
            "aicc_degradations", "Failed poll cycles by reason", ["vendor", "reason"], registry=r
        )
        self.pushes = Counter(
            "aicc_push_requests",
            "Vendor pushes by outcome (accepted, duplicate, not_task_call, already_polled, token, or the "
            "refusal's HTTP status)",
            ["vendor", "account", "outcome"],
            registry=r,
        )
        self.unreadable_values = Counter(
            "aicc_vendor_values_unreadable",
            "Vendor values that could not be read (published as null, or their record left out), by field",
            ["vendor", "account", "field"],
            registry=r,
        )
        self.build_info = Gauge(
            "aicc_build_info", "Always 1; the labels say which build runs", ["version", "python"], registry=r
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def campaign_source(self, vendor: str, account: str) -> None:
        """Start the series the campaign alerts watch at 0, so a source's first one is an increase."""
        for state in ALERTED_TASK_STATES:
            self.task_transitions.labels(vendor, account, state).inc(0)
        for outcome in ALERTED_CALL_OUTCOMES:
            self.calls.labels(vendor, account, outcome).inc(0)

    def observe_reads(
        self,
        vendor: str,
        account: str,
        scope: str,
        *,
        requests: dict[str, int],
        staleness: float,
        mismatches: dict[str, int],
        distrusted: float,
    ) -> None:
        """One cycle's scheduling choice: requests per kind of read, how stale the oldest read is, and
        whether the status filter is relied on."""
        for kind, n in requests.items():
            self.read_requests.labels(vendor, account, scope, kind).inc(n)
        for verdict, n in mismatches.items():
            self.read_filter_mismatches.labels(vendor, account, scope, verdict).inc(n)
        self.read_filter_distrusted.labels(vendor, account, scope).set(distrusted)
        if staleness != float("inf"):
            self.read_staleness.labels(vendor, account, scope).set(staleness)

    def observe_request(self, vendor: str, api: str, outcome: str, seconds: float) -> None:
        self.requests.labels(vendor, api, outcome).inc()
        self.request_seconds.labels(vendor, api).observe(seconds)
        if outcome == "throttled":
            self.throttled.labels(vendor, api).inc()
