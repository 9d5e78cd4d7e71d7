"""Wires the steps together under one anyio task group.

Each source runs its own loop (bulkhead): poll, each page diffed and published (every event acked)
as it is read → the rest of the diff at the sweep's end (vanishes, progress, cursors) → the state
handed to the source's committer, which writes it to the KV beside the next sweep. A source that
hangs or fails delays nobody else; one that fails backs off with jitter and reports one
``source-degraded`` per episode. On stop, polling is cancelled at once while publishes and commits
already under way get ``shutdown_grace`` seconds to finish (shielded from the cancellation).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec
import nats
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from poller.config import Config
from poller.control import serve_control
from poller.differ import SourceId, SweepDiff, health_transition
from poller.errors import InternalError, as_source_error
from poller.model import EntitySnapshot, PageSink
from poller.ops.metrics import Metrics
from poller.ops.server import serve_http
from poller.privacy import Privacy
from poller.publisher import Publisher, subject_token
from poller.ratelimit import LimiterRegistry
from poller.replay import replay
from poller.sharding import owns
from poller.state import SourceState, StateStore, kv_key_token
from poller.vendors import VENDORS
from poller.vendors.base import AdapterContext, Source, limiter_trace
from schemas.events import EventBase, event_type

log = logging.getLogger("poller.service")
T = TypeVar("T")
ExtraTask = Callable[["Service"], Coroutine[Any, Any, None]]


@dataclass
class SourceStatus:
    """What readiness and operators need to know about one source."""

    source: Source
    key: str
    last_success: float | None = None
    last_commit: float | None = None
    degraded: bool = False
    started: float = field(default_factory=time.monotonic)
    #: the last time nothing this source observed was waiting to be committed (commit lag = now - this);
    #: a quiet source commits nothing, so "time since the last commit" would alert falsely
    caught_up: float = field(default_factory=time.monotonic)


class Service:
    def __init__(
        self, config: Config, *, metrics: Metrics | None = None, nats_options: dict[str, Any] | None = None
    ):
        self.config = config
        self.metrics = metrics or Metrics()
        self.limiters = LimiterRegistry()
        self.privacy = Privacy(
            config.privacy.personal_data,
            config.privacy.hash_salt.reveal() if config.privacy.hash_salt else "",
        )
        self.statuses: dict[str, SourceStatus] = {}
        self.nats_connected = False
        self.infrastructure_ready = False
        self.stopping = anyio.Event()
        self.started = anyio.Event()
        self._nats_options = nats_options or {}
        self._poll_scopes: set[anyio.CancelScope] = set()
        self._drain_scopes: set[anyio.CancelScope] = set()
        self._nc: Any = None
        self._js: Any = None
        self.publisher: Publisher | None = None
        #: the ops HTTP port once bound (poller/ops/server.py)
        self.http_port: int | None = None
        self.store: StateStore | None = None

    @property
    def nats(self) -> Any:
        """The live NATS connection (for control subjects and ops); None before ``run`` connects."""
        return self._nc

    @property
    def jetstream(self) -> Any:
        return self._js

    # -- NATS ---------------------------------------------------------------------------------
    async def _connect(self) -> Any:
        cfg = self.config.nats

        async def disconnected() -> None:
            self.nats_connected = False
            self.metrics.nats_connected.set(0)
            if not self.stopping.is_set():
                log.warning("NATS disconnected")

        async def reconnected() -> None:
            self.nats_connected = True
            self.metrics.nats_connected.set(1)
            log.info("NATS reconnected")

        async def error(exc: Exception) -> None:
            log.warning("NATS client error", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})

        options: dict[str, Any] = {
            "servers": [cfg.url],
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "connect_timeout": 5,
            "allow_reconnect": True,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
            "error_cb": error,
            "name": "aicc-poller",
        }
        if cfg.user:
            options["user"] = cfg.user
        if cfg.password:
            options["password"] = cfg.password.reveal()
        if cfg.token:
            options["token"] = cfg.token.reveal()
        if cfg.creds_file:
            options["user_credentials"] = cfg.creds_file
        options.update(self._nats_options)
        while True:
            try:
                nc = await nats.connect(**options)
                break
            except Exception as exc:
                log.warning("cannot connect to NATS yet", extra={"error": f"{type(exc).__name__}"})
                await anyio.sleep(1.0)
        self.nats_connected = True
        self.metrics.nats_connected.set(1)
        return nc

    async def _ensure_infrastructure(self, js: Any) -> Any:
        cfg = self.config.nats
        stream = StreamConfig(
            name=cfg.stream,
            subjects=[f"{cfg.subject_prefix}.>"],
            storage=StorageType.FILE,
            duplicate_window=cfg.duplicate_window,
            max_age=cfg.max_age_days * 86400,
            num_replicas=cfg.replicas,
        )
        try:
            await js.add_stream(stream)
        except BadRequestError as exc:
            if getattr(exc, "err_code", None) != 10058:
                raise
            await js.update_stream(stream)
        try:
            kv = await js.key_value(cfg.state_bucket)
        except Exception:
            kv = await js.create_key_value(
                bucket=cfg.state_bucket,
                history=1,
                replicas=cfg.replicas,
                description="aicc-poller committed snapshots and cursors",
            )
        return kv

    # -- the per-source loop ----------------------------------------------------------------------
    async def _retry_nats(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """NATS is down: keep trying with backoff; the caller's state does not advance meanwhile."""
        attempt = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                attempt += 1
                delay = min(5.0, 0.2 * 2**attempt) * (0.5 + random.random())
                log.warning(
                    f"{what} failed, retrying", extra={"error": type(exc).__name__, "attempt": attempt}
                )
                await anyio.sleep(delay)

    async def _run_source(self, status: SourceStatus) -> None:
        committer = _Committer(self, status)
        async with anyio.create_task_group() as tg:
            tg.start_soon(committer.run)
            try:
                await self._poll_source(status, committer)
            finally:
                committer.close()  # what is pending is still committed (within the shutdown grace)

    async def _poll_source(self, status: SourceStatus, committer: _Committer) -> None:
        source = status.source
        sid = SourceId(vendor=source.vendor, account=source.account, scope=source.scope)
        labels = (source.vendor, source.account, source.scope)
        assert self.store is not None
        store = self.store
        state: SourceState = await self._retry_nats("state load", lambda: store.load(status.key))
        cfg = self.config.nats
        subjects = f"{cfg.subject_prefix}.{subject_token(source.vendor)}.{subject_token(source.account)}.>"
        await self._retry_nats("replay", lambda: replay(self._js, cfg.stream, subjects, status.key, state))
        self.metrics.entities.labels(*labels).set(len(state.entities))
        failures = 0
        while not self.stopping.is_set():
            cycle_started = time.monotonic()
            failure: tuple[str, str, str] | None = None
            observation = None
            sweep = SweepDiff(sid, state, self.privacy)
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
            self.metrics.poll_cycle_seconds.labels(source.vendor).observe(time.monotonic() - cycle_started)
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
            self.metrics.source_degraded.labels(*labels).set(1 if health.degraded else 0)
            self.metrics.entities.labels(*labels).set(len(state.entities))
            if failure is None:
                failures = 0
                status.last_success = time.monotonic()
                self.metrics.poll_cycles.labels(source.vendor, source.account, "ok").inc()
                delay = max(0.0, source.poll_interval - (time.monotonic() - cycle_started))
            else:
                failures += 1
                self.metrics.poll_cycles.labels(source.vendor, source.account, "failed").inc()
                self.metrics.degradations.labels(source.vendor, failure[1]).inc()
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
            with anyio.move_on_after(delay):
                await self.stopping.wait()

    async def _publish_final(
        self, status: SourceStatus, events: list[EventBase], state: SourceState, cycle_started: float
    ) -> None:
        """The cycle's last events (vanishes, progress, health). Shielded: a stop lets it finish."""
        assert self.publisher is not None
        publisher = self.publisher
        with anyio.CancelScope(shield=True) as drain:
            self._drain_scopes.add(drain)
            try:
                highest = await publisher.publish(events, status.key)
                state.stream_seq = max(state.stream_seq, highest)
                self._count(status.source.vendor, events, cycle_started)
            finally:
                self._drain_scopes.discard(drain)
        if drain.cancelled_caught:
            log.warning(
                "shutdown grace ran out before publishing finished; a restart re-derives the events",
                extra={"vendor": status.source.vendor, "account": status.source.account},
            )

    def _page_sink(self, status: SourceStatus, sweep: SweepDiff, cycle_started: float) -> PageSink:
        """Diff and publish each page as the adapter reads it; the commit at the cycle's end records it.

        Not shielded: a stop may cut a page's publish, and the events already stored are then replayed
        into the state on restart (poller/replay.py), as after a crash between publish and commit.
        """
        assert self.publisher is not None
        publisher = self.publisher
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
            self.metrics.events.labels(vendor, event_type(event)).inc()
            self.metrics.detection_lag.labels(vendor).observe(lag)

    # -- lifecycle ---------------------------------------------------------------------------------
    def build_sources(self, ctx: AdapterContext) -> list[Source]:
        sources: list[Source] = []
        shard = self.config.shard
        for account in self.config.sources:
            if not account.enabled or not owns(account.vendor, account.account, shard.index, shard.count):
                continue
            sources.extend(VENDORS[account.vendor].sources(account, ctx))
        return sources

    def refresh_metrics(self) -> None:
        """Gauges that are ages or window counts, computed when /metrics is scraped."""
        now = time.monotonic()
        for status in self.statuses.values():
            source = status.source
            lag = now - status.caught_up
            self.metrics.commit_lag.labels(source.vendor, source.account, source.scope).set(lag)
        for (vendor, api, credential), limiter in self.limiters.items():
            # a credential id is not a secret, but it is not the dashboard's business either
            label = hashlib.sha256(credential.encode()).hexdigest()[:12]
            self.metrics.limiter_in_window.labels(vendor, api, label).set(limiter.in_window(now))
            self.metrics.limiter_limit.labels(vendor, api, label).set(limiter.effective_limit(now))

    async def _enforce_grace(self) -> None:
        await self.stopping.wait()
        await anyio.sleep(self.config.shutdown_grace)
        for scope in list(self._drain_scopes):
            scope.cancel()

    def stop(self) -> None:
        """Stop scheduling: cancel polls in flight; publishes and commits under way finish."""
        self.stopping.set()
        for scope in list(self._poll_scopes):
            scope.cancel()

    async def run(self, extra_tasks: list[ExtraTask] | None = None) -> None:
        """The ops port is up from the start: /healthz answers and /readyz says 503 while NATS is
        still unreachable, so a liveness probe does not restart a poller that is only waiting."""
        async with anyio.create_task_group() as ops:
            ops.start_soon(serve_http, self)
            try:
                await self._run(extra_tasks)
            finally:
                ops.cancel_scope.cancel()

    async def _run(self, extra_tasks: list[ExtraTask] | None = None) -> None:
        self._nc = await self._connect()
        try:
            js = self._js = self._nc.jetstream(timeout=self.config.nats.ack_timeout)
            kv = await self._retry_nats("stream and bucket set-up", lambda: self._ensure_infrastructure(js))
            self.infrastructure_ready = True
            self.store = StateStore(kv)
            self.publisher = Publisher(
                js,
                subject_prefix=self.config.nats.subject_prefix,
                ack_timeout=self.config.nats.ack_timeout,
                on_published=lambda _e, seconds: self.metrics.publish_seconds.observe(seconds),
                on_failure=lambda _why: self.metrics.publish_failures.inc(),
            )
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            # no pool cap: a request waiting for a pooled connection after the limiter let it start
            # would reach the vendor late and crowd the vendor's window; in-flight requests are already
            # bounded by the limiters (rate x latency) and the request timeouts
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            async with aiohttp.ClientSession(
                timeout=timeout, connector=connector, trace_configs=[limiter_trace()]
            ) as http:
                ctx = AdapterContext(
                    http=http, limiters=self.limiters, observe_request=self.metrics.observe_request
                )
                sources = self.build_sources(ctx)
                for source in sources:
                    key = SourceId(vendor=source.vendor, account=source.account, scope=source.scope).key
                    self.statuses[key] = SourceStatus(source=source, key=_kv_key(key))
                log.info("poller started", extra={"sources": len(sources)})
                self.started.set()
                async with anyio.create_task_group() as helpers:
                    for task in extra_tasks or []:
                        helpers.start_soon(task, self)
                    helpers.start_soon(self._enforce_grace)
                    helpers.start_soon(serve_control, self)
                    async with anyio.create_task_group() as loops:
                        for status in self.statuses.values():
                            loops.start_soon(self._run_source, status)
                        await self.stopping.wait()
                    helpers.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._nc.drain() if self._nc.is_connected else await self._nc.close()
            log.info("poller stopped")


class _Committer:
    """Commits a source's state beside its polling, so the next sweep does not wait for the KV.

    Every event a state reflects is acked before the state is handed over, and the stream is the
    write-ahead log (poller/replay.py): a commit that is late, or lost in a crash, only means more
    to replay on restart. States handed over while a commit runs are coalesced into one commit of
    the newest, with the union of their changed entities. Commits are shielded: on stop, what is
    pending is committed within the shutdown grace.
    """

    def __init__(self, service: Service, status: SourceStatus) -> None:
        self._service = service
        self._status = status
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
        service, status = self._service, self._status
        assert service.store is not None
        store, source = service.store, status.source
        with anyio.CancelScope(shield=True) as drain:
            service._drain_scopes.add(drain)
            try:
                await service._retry_nats("state commit", lambda: store.commit(status.key, state, changed))
                status.last_commit = time.monotonic()
                if self._state is None:
                    status.caught_up = status.last_commit
                service.metrics.commits.labels(source.vendor, "ok").inc()
            finally:
                service._drain_scopes.discard(drain)
        if drain.cancelled_caught:
            log.warning(
                "shutdown grace ran out before the state commit finished; a restart replays the stream",
                extra={"vendor": source.vendor, "account": source.account},
            )


def _kv_key(source_key: str) -> str:
    return ".".join(kv_key_token(token) for token in source_key.split("."))
