"""One source's loop (a bulkhead): poll, diff and publish each page, finish the sweep, hand to commit.

A source that hangs or fails delays nobody else; one that fails backs off with jitter and reports
one ``source-degraded`` per episode. Polling is cancelled at once on stop, while publishes and
commits under way run shielded until the shutdown grace runs out (:class:`Drains`).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec

from poller.errors import InternalError, as_source_error
from poller.ops.metrics import Metrics
from poller.pipeline.differ import SweepDiff
from poller.pipeline.health import health_transition
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.publisher import Publisher
from poller.pipeline.replay import replay
from poller.pipeline.snapshot import EntitySnapshot, PageSink
from poller.pipeline.state import SourceState
from poller.pipeline.store import StateStore
from poller.pipeline.subjects import subject_token
from poller.runtime.committer import Committer
from poller.runtime.connection import retry_nats
from poller.runtime.drain import Drains
from poller.runtime.status import SourceStatus
from schemas import CallFinished, TaskStatusChanged
from schemas.events import EventBase, event_type

__all__ = ["SourceLoop"]

log = logging.getLogger("poller.runtime")


class SourceLoop:
    """Everything one source's loop needs, shared by every source of a service."""

    def __init__(
        self,
        *,
        js: Any,
        stream: str,
        subject_prefix: str,
        store: StateStore,
        publisher: Publisher,
        privacy: Privacy,
        metrics: Metrics,
        drains: Drains,
        stopping: anyio.Event,
        poll_scopes: set[anyio.CancelScope],
        on_published: Callable[[list[EventBase]], None] | None = None,
    ) -> None:
        self._js = js
        self._stream = stream
        self._prefix = subject_prefix
        self._store = store
        self._publisher = publisher
        self._privacy = privacy
        self._metrics = metrics
        self._drains = drains
        self._stopping = stopping
        self._poll_scopes = poll_scopes
        #: told of every batch of acked events (the status page's recent events)
        self._on_published = on_published

    async def run(self, status: SourceStatus) -> None:
        vendor = status.source.vendor
        committer = Committer(
            self._store,
            status,
            self._drains,
            on_commit=lambda outcome: self._metrics.commits.labels(vendor, outcome).inc(),
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(committer.run)
            try:
                await self._poll(status, committer)
            finally:
                committer.close()  # what is pending is still committed (within the shutdown grace)

    async def _poll(self, status: SourceStatus, committer: Committer) -> None:
        source = status.source
        sid = SourceId(vendor=source.vendor, account=source.account, scope=source.scope)
        labels = (source.vendor, source.account, source.scope)
        store = self._store
        state: SourceState = await retry_nats("state load", lambda: store.load(status.key))
        subjects = f"{self._prefix}.{subject_token(source.vendor)}.{subject_token(source.account)}.>"
        await retry_nats("replay", lambda: replay(self._js, self._stream, subjects, status.key, state))
        self._metrics.entities.labels(*labels).set(len(state.entities))
        self._metrics.campaign_source(source.vendor, source.account)
        failures = 0
        while not self._stopping.is_set():
            cycle_started = time.monotonic()
            failure: tuple[str, str, str] | None = None
            observation = None
            sweep = SweepDiff(sid, state, self._privacy)
            with anyio.CancelScope() as scope:
                self._poll_scopes.add(scope)
                try:
                    observation = await source.observe(state, self._page_sink(status, sweep, cycle_started))
                except Exception as exc:
                    error = as_source_error(exc)
                    if error is None:
                        raise
                    if isinstance(error, InternalError):
                        log.exception("adapter failed unexpectedly", extra={"vendor": source.vendor})
                    failure = (error.api or "?", error.reason.value, error.detail[:300])
                finally:
                    self._poll_scopes.discard(scope)
            if scope.cancelled_caught:
                break
            self._metrics.poll_cycle_seconds.labels(source.vendor).observe(time.monotonic() - cycle_started)
            now = datetime.now(UTC)
            health, health_events = health_transition(sid, state.health, failure, now)
            # a failed cycle still keeps the pages it applied: their events may be out already
            d = sweep.finish(observation, now) if observation is not None else sweep.unfinished()
            events: list[EventBase] = health_events + d.events
            new_state = msgspec.structs.replace(d.state, health=health)
            changed: set[str] | None = d.changed
            if events:
                await self._publish_final(status, events, new_state, cycle_started)
            if events or changed or new_state.cursors != state.cursors:
                committer.submit(new_state, changed)
            elif committer.idle:
                status.caught_up = time.monotonic()
            state = new_state
            status.degraded = health.degraded
            self._metrics.source_degraded.labels(*labels).set(1 if health.degraded else 0)
            self._metrics.entities.labels(*labels).set(len(state.entities))
            if failure is None:
                failures = 0
                status.last_success = time.monotonic()
                self._metrics.poll_cycles.labels(source.vendor, source.account, "ok").inc()
                delay = max(0.0, source.poll_interval - (time.monotonic() - cycle_started))
            else:
                failures += 1
                self._metrics.poll_cycles.labels(source.vendor, source.account, "failed").inc()
                self._metrics.degradations.labels(source.vendor, failure[1]).inc()
                log.warning(
                    "poll cycle failed",
                    extra={
                        "vendor": source.vendor,
                        "account": source.account,
                        "api": failure[0],
                        "reason": failure[1],
                        "detail": failure[2],
                    },
                )
                delay = min(60.0, source.config.failure_backoff * 2 ** min(failures - 1, 6))
                delay *= 0.5 + random.random()
            status.cycle_done(started=cycle_started, failure=failure, state=state, delay=delay)
            with anyio.move_on_after(delay):
                await self._stopping.wait()

    async def _publish_final(
        self, status: SourceStatus, events: list[EventBase], state: SourceState, cycle_started: float
    ) -> None:
        """The cycle's last events (vanishes, progress, health). Shielded: a stop lets it finish."""
        with self._drains.shielded() as drain:
            highest = await self._publisher.publish(events, status.key)
            state.stream_seq = max(state.stream_seq, highest)
            self._count(status.source.vendor, events, cycle_started)
        if drain.cancelled_caught:
            log.warning(
                "shutdown grace ran out before publishing finished; a restart re-derives the events",
                extra={"vendor": status.source.vendor, "account": status.source.account},
            )

    def _page_sink(self, status: SourceStatus, sweep: SweepDiff, cycle_started: float) -> PageSink:
        """Diff and publish each page as the adapter reads it; the commit at the cycle's end records it.

        Not shielded: a stop may cut a page's publish, and the events already stored are then replayed
        into the state on restart (:mod:`poller.pipeline.replay`), as after a crash between publish
        and commit.
        """
        publisher = self._publisher
        one_at_a_time = anyio.Lock()  # pages arrive concurrently; each entity's events stay in seq order

        async def publish_page(snapshots: list[EntitySnapshot]) -> None:
            async with one_at_a_time:
                events = sweep.apply(snapshots, datetime.now(UTC))
                if events:
                    sweep.published(await publisher.publish(events, status.key))
                    self._count(status.source.vendor, events, cycle_started)

        return publish_page

    def _count(self, vendor: str, events: list[EventBase], cycle_started: float) -> None:
        lag = time.monotonic() - cycle_started
        for event in events:
            self._metrics.events.labels(vendor, event.account, event_type(event)).inc()
            self._metrics.detection_lag.labels(vendor).observe(lag)
            if isinstance(event, CallFinished):
                self._metrics.calls.labels(vendor, event.account, event.outcome.value).inc()
            elif isinstance(event, TaskStatusChanged):
                self._metrics.task_transitions.labels(vendor, event.account, event.current.state.value).inc()
        if self._on_published is not None:
            self._on_published(events)
