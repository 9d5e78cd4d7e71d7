"""One source's loop (a bulkhead): poll, diff and publish each page, finish the sweep, hand to commit.

A source that hangs or fails delays nobody else; one that fails backs off with jitter and reports
one ``source-degraded`` per episode. Polling is cancelled at once on stop, while publishes and
commits under way run shielded until the shutdown grace runs out (:class:`Drains`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import msgspec

from poller.errors import InternalError, PublishRejected, as_source_error
from poller.ops.metrics import Metrics
from poller.pipeline.differ import Basis, MassVanish, SweepDiff
from poller.pipeline.health import health_transition
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.publisher import Publisher, PublishProgress
from poller.pipeline.redact import Redactor
from poller.pipeline.replay import replay
from poller.pipeline.snapshot import EntitySnapshot, PageSink
from poller.pipeline.state import Health, SourceState
from poller.pipeline.store import StateFenced, StateStore
from poller.pipeline.subjects import subject_token
from poller.runtime.committer import Committer
from poller.runtime.connection import FaultReport, retry_nats
from poller.runtime.drain import Drains
from poller.runtime.leases import Ownership
from poller.runtime.status import SourceStatus
from schemas import CallFinished, DegradeReason, TaskStatusChanged
from schemas.events import EventBase, event_type

__all__ = ["SourceLoop"]

log = logging.getLogger("poller.runtime")

#: how often a replica that should own an account asks for its lease while someone else holds it
LEASE_RETRY = 0.5
#: the ``api`` of a source-degraded that NATS refusing the state commit opened, and the operation
#: of its aicc_nats_refusals count
COMMIT_API = "state commit"


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
        redactor: Redactor,
        drains: Drains,
        stopping: anyio.Event,
        poll_scopes: set[anyio.CancelScope],
        ownership: Ownership | None = None,
        on_nats_fault: FaultReport | None = None,
        on_published: Callable[[list[EventBase]], None] | None = None,
    ) -> None:
        self._js = js
        self._stream = stream
        self._prefix = subject_prefix
        self._store = store
        self._publisher = publisher
        self._privacy = privacy
        self._redactor = redactor
        self._metrics = metrics
        self._drains = drains
        self._stopping = stopping
        self._poll_scopes = poll_scopes
        self._ownership = ownership
        self._on_nats_fault = on_nats_fault
        #: told of every batch of acked events (the status page's recent events)
        self._on_published = on_published

    async def run(self, status: SourceStatus) -> None:
        if self._ownership is None:
            status.owned = True
            await self._run_owned(status, lambda: True)
        else:
            await self._run_leased(status, self._ownership)

    async def _run_leased(self, status: SourceStatus, ownership: Ownership) -> None:
        """Poll while this replica holds the account's lease; wait for it otherwise."""
        account = f"{status.source.vendor}.{status.source.account}"
        while not self._stopping.is_set():
            start_at = None
            if ownership.should_own(account):
                try:
                    with anyio.CancelScope() as asking:  # a stop must not wait for a silent NATS
                        self._poll_scopes.add(asking)
                        try:
                            start_at = await ownership.hold(account)
                        finally:
                            self._poll_scopes.discard(asking)
                except Exception as exc:  # NATS unreachable for now: ask again shortly
                    log.warning("cannot take the account's lease yet", extra={"error": type(exc).__name__})
            if start_at is None:
                with anyio.move_on_after(LEASE_RETRY):
                    await _first_of(self._stopping.wait, ownership.membership_changed)
                continue
            try:
                # a hand-over: the last owner's requests may still count in the vendor's window
                with anyio.move_on_after(max(0.0, start_at - time.time())):
                    await self._stopping.wait()
                if self._stopping.is_set():
                    break
                await self._leased_epoch(status, ownership, account)
            finally:
                status.owned = False
                # within the shutdown grace: a silent NATS lets the lease expire instead
                with self._drains.shielded(), anyio.move_on_after(5):
                    await ownership.release(account)

    async def _leased_epoch(self, status: SourceStatus, ownership: Ownership, account: str) -> None:
        """Poll until the lease is lost (cancelled at once) or handed over (after the cycle)."""
        lost = ownership.lost(account)
        status.owned = True
        log.info("polling this source here", extra={"source": status.key})
        async with anyio.create_task_group() as tg:

            async def cancel_when_lost() -> None:
                await lost.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_when_lost)
            await self._run_owned(status, lambda: not lost.is_set() and ownership.should_own(account))
            tg.cancel_scope.cancel()

    async def _run_owned(self, status: SourceStatus, keep_polling: Callable[[], bool]) -> None:
        vendor = status.source.vendor
        committer = Committer(
            self._store,
            status,
            self._drains,
            on_commit=lambda outcome: self._metrics.commits.labels(vendor, outcome).inc(),
            on_refused=lambda fault: self._metrics.nats_refusals.labels(COMMIT_API, fault.code).inc(),
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(committer.run)
                try:
                    await self._poll(status, committer, keep_polling)
                finally:
                    committer.close()  # what is pending is still committed (within the shutdown grace)
        except* StateFenced:
            # the committer lost a compare-and-set: the task group cancelled the poll at once
            status.fenced = True
            self._metrics.fenced.labels(vendor, status.source.account, status.source.scope).inc()
            log.error(
                "another writer committed this source's state; stopped polling it here",
                extra={"vendor": vendor, "account": status.source.account, "scope": status.source.scope},
            )
        finally:
            status.commit_fault = status.commit_fault_since = None  # no commit of it runs here now

    def _commit_refused(self, status: SourceStatus) -> tuple[tuple[str, str, str], datetime] | None:
        """The state commit NATS refuses for good, as a failure for the source's health: the
        episode lasts until a commit is accepted again, though polling and events go on."""
        fault, since = status.commit_fault, status.commit_fault_since
        if fault is None or since is None:
            return None
        detail = self._redactor.event_text(f"{fault.code}: {fault.detail}")[:300]
        return (COMMIT_API, DegradeReason.COMMIT_REJECTED.value, detail), datetime.fromtimestamp(since, UTC)

    async def _poll(
        self, status: SourceStatus, committer: Committer, keep_polling: Callable[[], bool]
    ) -> None:
        source = status.source
        sid = SourceId(vendor=source.vendor, account=source.account, scope=source.scope)
        labels = (source.vendor, source.account, source.scope)
        state = await self._load(status)
        if state is None:
            return
        self._metrics.entities.labels(*labels).set(len(state.entities))
        self._metrics.campaign_source(source.vendor, source.account)
        failures = 0
        mass_vanish = MassVanish(
            fraction=source.config.mass_vanish_fraction, minimum=source.config.mass_vanish_min
        )
        #: what the last finished cycle applied: the next skips what comes back unchanged
        basis: Basis | None = None
        while not self._stopping.is_set() and keep_polling():
            cycle_started = time.monotonic()
            failure: tuple[str, str, str] | None = None
            failed_since: datetime | None = None
            observation = None
            new_sweep = partial(
                SweepDiff,
                sid,
                state,
                self._privacy,
                mass_vanish,
                basis,
                hand_on=source.reuses_snapshots,
                redactor=self._redactor,
            )
            sweep = new_sweep()
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
                    if isinstance(error, PublishRejected):
                        self._metrics.nats_refusals.labels("publish", error.code).inc()
                    # redacted whole, then cut: a cut first could leave half a secret unrecognized
                    detail = self._redactor.event_text(error.detail)[:300]
                    failure = (error.api or "?", error.reason.value, detail)
                    # the episode starts at the failed request's first attempt, else at the cycle's start
                    failed_since = datetime.fromtimestamp(
                        error.first_failed_at or time.time() - (time.monotonic() - cycle_started), UTC
                    )
                finally:
                    self._poll_scopes.discard(scope)
            if scope.cancelled_caught:
                break
            self._metrics.poll_cycle_seconds.labels(source.vendor).observe(time.monotonic() - cycle_started)
            now = datetime.now(UTC)
            # the cycle's own failure first; else a refused commit keeps (or opens) an episode
            unhealthy, unhealthy_since = failure, failed_since
            refused = self._commit_refused(status) if failure is None else None
            if refused is not None:
                unhealthy, unhealthy_since = refused
            health, health_events = health_transition(sid, state.health, unhealthy, now, unhealthy_since)
            if failure is not None and failure[1] == DegradeReason.PUBLISH_REJECTED:
                # a page NATS refused was applied but not stored: keep nothing of this cycle
                sweep = new_sweep()
            # a failed cycle still keeps the pages it applied: their events may be out already
            d = sweep.finish(observation, now) if observation is not None else sweep.unfinished()
            # the basis is checked against the state it is handed with: one that does not match the
            # committed state only costs the check
            basis = d.basis
            events: list[EventBase] = health_events + d.events
            new_state = msgspec.structs.replace(d.state, health=health)
            changed: set[str] | None = d.changed
            if events:
                try:
                    acked, stream_seq = await self._publish_final(status, events, cycle_started)
                except PublishRejected as exc:
                    self._metrics.nats_refusals.labels("publish", exc.code).inc()
                    detail = self._redactor.event_text(exc.detail)[:300]
                    failure = unhealthy = (exc.api or "publish", exc.reason.value, detail)
                    health, new_state = await self._rejected_final(status, sid, state, failure, cycle_started)
                    changed = set()
                    basis = None
                else:
                    new_state.stream_seq = max(new_state.stream_seq, stream_seq)
                    if acked < len(events):
                        # the grace cut the publish short: commit only what the acked prefix says
                        new_state = sweep.acked_only(events[:acked])
                        if acked >= len(health_events):
                            new_state.health = health
                        committer.submit(new_state, changed)
                        break
            if new_state.vanish_held and not state.vanish_held:
                log.warning(
                    "a complete listing lost most entities at once; they vanish only if the next agrees",
                    extra={"vendor": source.vendor, "account": source.account, "held": new_state.vanish_held},
                )
            if (
                events
                or changed
                or new_state.cursors != state.cursors
                or self._store.names_pending(status.key)
            ):
                committer.submit(new_state, changed)
            elif committer.idle:
                status.caught_up = time.monotonic()
            state = new_state
            status.degraded = health.degraded
            self._metrics.source_degraded.labels(*labels).set(1 if health.degraded else 0)
            self._metrics.entities.labels(*labels).set(len(state.entities))
            status.failure = None if unhealthy is None else self._redactor(unhealthy[2])
            status.failure_reason = None if unhealthy is None else unhealthy[1]
            self._metrics.vanish_held.labels(*labels).set(state.vanish_held)
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

    async def _load(self, status: SourceStatus) -> SourceState | None:
        """The committed state with the stream replayed into it; None if stopped first (NATS may be
        down for long: a stop must not wait for it, and there is nothing to drain yet)."""
        source, store, on_fault = status.source, self._store, self._on_nats_fault
        subjects = f"{self._prefix}.{subject_token(source.vendor)}.{subject_token(source.account)}.>"
        if self._stopping.is_set():
            return None
        with anyio.CancelScope() as loading:
            self._poll_scopes.add(loading)
            try:
                state: SourceState = await retry_nats(
                    "state load", lambda: store.load(status.key), on_fault=on_fault
                )
                await retry_nats(
                    "replay",
                    lambda: replay(
                        self._js, self._stream, subjects, status.key, state, names=self._redactor.kept
                    ),
                    on_fault=on_fault,
                )
                return state
            finally:
                self._poll_scopes.discard(loading)
        return None

    async def _publish_final(
        self, status: SourceStatus, events: list[EventBase], cycle_started: float
    ) -> tuple[int, int]:
        """The cycle's last events (calls, vanishes, progress, health): how many were acked, and the
        highest stream sequence among them.

        Shielded: a stop lets it finish, within the shutdown grace. Cut short, only a prefix of
        ``events`` is acked, and only that prefix may reach the committed state.
        """
        progress = PublishProgress()
        with self._drains.shielded():
            await self._publisher.publish(events, status.key, progress)
        self._count(status.source.vendor, events[: progress.acked], cycle_started)
        if progress.acked < len(events):
            log.warning(
                "shutdown grace ran out before publishing finished; a restart re-derives the events",
                extra={
                    "vendor": status.source.vendor,
                    "account": status.source.account,
                    "acked": progress.acked,
                    "events": len(events),
                },
            )
        return progress.acked, progress.stream_seq

    async def _rejected_final(
        self,
        status: SourceStatus,
        sid: SourceId,
        state: SourceState,
        failure: tuple[str, str, str],
        cycle_started: float,
    ) -> tuple[Health, SourceState]:
        """NATS refused one of the cycle's last events: only the health change is kept and told."""
        health, health_events = health_transition(sid, state.health, failure, datetime.now(UTC))
        kept = msgspec.structs.replace(state, health=health)
        if health_events:
            with contextlib.suppress(PublishRejected):  # reported by the log and metrics anyway
                acked, stream_seq = await self._publish_final(status, health_events, cycle_started)
                if acked < len(health_events):
                    return state.health, state  # the grace cut it short: the episode is not told
                kept.stream_seq = max(kept.stream_seq, stream_seq)
        return health, kept

    def _page_sink(self, status: SourceStatus, sweep: SweepDiff, cycle_started: float) -> PageSink:
        """Diff and publish each page as the adapter reads it; the commit at the cycle's end records it.

        Not shielded: a stop (or a failing sibling read) may cut a page's publish. The page is then
        taken back but for its acked events, so the failed cycle commits nothing unpublished; events
        stored but not acked are replayed into the state on restart (:mod:`poller.pipeline.replay`),
        as after a crash between publish and commit.
        """
        publisher = self._publisher
        one_at_a_time = anyio.Lock()  # pages arrive concurrently; each entity's events stay in seq order

        async def publish_page(snapshots: Sequence[EntitySnapshot]) -> None:
            async with one_at_a_time:
                events, undo = sweep.apply_page(snapshots, datetime.now(UTC))
                if not events:
                    return
                progress = PublishProgress()
                try:
                    stream_seq = await publisher.publish(events, status.key, progress)
                except BaseException:
                    sweep.take_back(undo, events[: progress.acked])
                    sweep.published(progress.stream_seq)
                    raise
                sweep.published(stream_seq)
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


async def _first_of(*waits: Callable[[], Awaitable[None]]) -> None:
    """Return as soon as any of ``waits`` returns."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Callable[[], Awaitable[None]]) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)
