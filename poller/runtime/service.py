"""Wires the steps together under one anyio task group.

NATS connection and set-up (:mod:`~poller.runtime.connection`), one loop per source
(:mod:`~poller.runtime.source_loop`) with its committer (:mod:`~poller.runtime.committer`), the
control subjects (:mod:`~poller.runtime.control`) and the ops port (:mod:`poller.ops`). On stop,
polling is cancelled at once while publishes and commits already under way get ``shutdown_grace``
seconds to finish (:mod:`~poller.runtime.drain`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
import anyio
import anyio.abc
from prometheus_client import generate_latest

from poller import __version__
from poller.config import Config
from poller.ops.configview import secret_values
from poller.ops.http import serve_http
from poller.ops.metrics import Metrics
from poller.ops.recent import RecentEvents
from poller.ops.redaction import Redact, public_url
from poller.ops.status import LimitView, NatsView, ServiceView, SourceView
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.publisher import Publisher
from poller.pipeline.redact import Redactor
from poller.pipeline.store import StateStore, kv_key_token
from poller.push import PushServer, serve_push
from poller.push.server import build_receivers
from poller.push.tencent import SessionTasks
from poller.runtime.connection import (
    close_nats,
    connect,
    ensure_coordination,
    ensure_infrastructure,
    retry_nats,
    tls_context,
)
from poller.runtime.control import serve_control
from poller.runtime.drain import Drains
from poller.runtime.leases import Ownership, unique_replica_id
from poller.runtime.nats_watch import NatsWatch
from poller.runtime.reload import plan_reload, running_part
from poller.runtime.sharding import owns
from poller.runtime.source_loop import SourceLoop
from poller.runtime.status import SourceStatus
from poller.runtime.streamfacts import StreamFacts, watch_stream
from poller.transport import LimiterRegistry, limiter_trace
from poller.vendors import VENDORS
from poller.vendors.base import AccountConfig, AdapterContext, Source
from poller.vendors.tencent_ccc import VENDOR as TENCENT
from poller.vendors.tencent_ccc import TencentCccSource
from poller.vendors.watch import WatchList

__all__ = ["ExtraTask", "Service"]

log = logging.getLogger("poller.service")
ExtraTask = Callable[["Service"], Coroutine[Any, Any, None]]


@dataclass
class _RunningSource:
    """One source's loop as the service runs it: stopped on its own by a reload, or with the rest."""

    status: SourceStatus
    stopping: anyio.Event = field(default_factory=anyio.Event)
    poll_scopes: set[anyio.CancelScope] = field(default_factory=set)
    done: anyio.Event = field(default_factory=anyio.Event)

    def stop(self) -> None:
        """Polling is cancelled at once; publishes and commits under way finish (as for the service)."""
        self.stopping.set()
        for scope in list(self.poll_scopes):
            scope.cancel()


class Service:
    def __init__(
        self, config: Config, *, metrics: Metrics | None = None, nats_options: dict[str, Any] | None = None
    ):
        self.config = config
        if config.nats.tls is not None:
            tls_context(config.nats.tls)  # unreadable files are a configuration error, raised now
        self.metrics = metrics or Metrics()
        self.limiters = LimiterRegistry()
        self.privacy = Privacy(
            config.privacy.personal_data,
            config.privacy.hash_salt.reveal() if config.privacy.hash_salt else "",
        )
        #: the one redaction step for everything that leaves the process (events, logs, ops views)
        self.redactor = Redactor(secret_values(config), self.privacy)
        self.statuses: dict[str, SourceStatus] = {}
        self._nats = NatsWatch(
            config.nats.url, self.metrics, stopping=lambda: self.stopping.is_set(), stop=lambda: self.stop()
        )
        self.infrastructure_ready = False
        self.stopping = anyio.Event()
        self.started = anyio.Event()
        self._nats_options = nats_options or {}
        self._running: dict[str, _RunningSource] = {}
        self._loops: anyio.abc.TaskGroup | None = None
        self._ctx: AdapterContext | None = None
        #: a source's loop, given its own stop (set once NATS is set up)
        self._new_loop: Callable[..., SourceLoop] = SourceLoop
        self._reloads_in, self._reloads = anyio.create_memory_object_stream[Config](math.inf)
        self._drains = Drains()
        #: the stream and bucket set-up, which a stop cancels (there is nothing to drain yet)
        self._setting_up: anyio.CancelScope | None = None
        self._nc: Any = None
        self._js: Any = None
        self.publisher: Publisher | None = None
        #: the push receivers, when ``[push]`` is enabled, and their bound port
        self.push: PushServer | None = None
        self.push_port: int | None = None
        self.push_ready = anyio.Event()
        #: the ops HTTP port once bound
        self.http_port: int | None = None
        self.store: StateStore | None = None
        self._redact: Redact = self.redactor  # one redactor: it learns new secrets on a reload
        self.recent_events = RecentEvents(self._redact)
        self.stream_facts = StreamFacts()
        self.replica_id = config.coordination.replica_id or unique_replica_id()
        #: the leases this replica holds (None with static sharding)
        self.ownership: Ownership | None = None

    @property
    def nats_connected(self) -> bool:
        return self._nats.connected

    @property
    def nats(self) -> Any:
        """The live NATS connection (for control subjects and ops); None before ``run`` connects."""
        return self._nc

    @property
    def jetstream(self) -> Any:
        return self._js

    # -- the status protocol (poller.ops.status) ---------------------------------------------------
    def status_view(self) -> ServiceView:
        now = time.monotonic()
        redact = self._redact
        facts = self.stream_facts
        return ServiceView(
            nats_connected=self.nats_connected,
            stream_and_bucket=self.infrastructure_ready,
            stopping=self.stopping.is_set(),
            sources=[_source_view(key, status, now, redact) for key, status in self.statuses.items()],
            version=__version__,
            taken_monotonic=now,
            taken_epoch=time.time(),
            nats=NatsView(
                url=redact(public_url(self.config.nats.url)),
                connected=self.nats_connected,
                stream=self.config.nats.stream,
                stream_messages=facts.messages,
                stream_bytes=facts.bytes,
                stream_last_seq=facts.last_seq,
                stream_checked=facts.checked,
            ),
            recent_events=self.recent_events.latest(),
            nats_faults=self._nats.faults(),
        )

    def metrics_exposition(self) -> bytes:
        self.refresh_metrics()
        return bytes(generate_latest(self.metrics.registry))

    def refresh_metrics(self) -> None:
        """Gauges that are ages or window counts, computed when /metrics is scraped."""
        now = time.monotonic()
        for status in self.statuses.values():
            source = status.source
            lag = now - status.caught_up
            self.metrics.commit_lag.labels(source.vendor, source.account, source.scope).set(lag)
        self.metrics.tasks.clear()  # a state no task is in any more must not keep its last count
        for status in self.statuses.values():
            source = status.source
            for state, count in status.campaign_states().items():
                self.metrics.tasks.labels(source.vendor, source.account, state).inc(count)
        for (vendor, api, credential), limiter in self.limiters.items():
            # a credential id is not a secret, but it is not the dashboard's business either
            label = hashlib.sha256(credential.encode()).hexdigest()[:12]
            self.metrics.limiter_in_window.labels(vendor, api, label).set(limiter.in_window(now))
            self.metrics.limiter_limit.labels(vendor, api, label).set(limiter.effective_limit(now))

    def _count_unreadable(self, vendor: str, account: str, field: str) -> None:
        self.metrics.unreadable_values.labels(vendor, account, field).inc()

    # -- lifecycle ---------------------------------------------------------------------------------
    def build_sources(self, ctx: AdapterContext) -> list[Source]:
        """Every enabled source; with static sharding only this replica's (leases decide later)."""
        sources: list[Source] = []
        shard = self.config.shard
        static = self.config.coordination.mode == "static"
        for account in self.config.sources:
            if not account.enabled:
                continue
            if static and not owns(account.vendor, account.account, shard.index, shard.count):
                continue
            sources.extend(VENDORS[account.vendor].sources(account, ctx))
        return sources

    def stop(self) -> None:
        """Stop scheduling: cancel polls in flight; publishes and commits under way finish."""
        self.stopping.set()
        if self._setting_up is not None:
            self._setting_up.cancel()
        for running in list(self._running.values()):
            running.stop()

    def request_reload(self, config: Config) -> None:
        """Apply ``config``'s sources once started (SIGHUP); requests are applied one after another."""
        self._reloads_in.send_nowait(config)

    async def _enforce_grace(self) -> None:
        await self.stopping.wait()
        await anyio.sleep(self.config.shutdown_grace)
        self._drains.cancel_all()

    def _apply_fleet_shares(self, shares: dict[tuple[str, str], float]) -> None:
        for (vendor, api), share in shares.items():
            self.limiters.set_fleet_share(vendor, api, share)

    def _bound(self, port: int) -> None:
        self.http_port = port

    def _push_bound(self, port: int) -> None:
        self.push_port = port
        self.push_ready.set()

    async def run(self, extra_tasks: list[ExtraTask] | None = None) -> None:
        """The ops port is up from the start: /healthz answers and /readyz says 503 while NATS is
        still unreachable, so a liveness probe does not restart a poller that is only waiting."""
        async with anyio.create_task_group() as ops:
            ops.start_soon(serve_http, self, self.config.http, self._bound)
            try:
                await self._run(extra_tasks)
            finally:
                ops.cancel_scope.cancel()
                self._reloads_in.close()
                self._reloads.close()
        if self._nats.gave_up is not None:
            raise self._nats.gave_up

    async def _run(self, extra_tasks: list[ExtraTask] | None = None) -> None:
        cfg = self.config.nats
        self._nc = await connect(
            cfg,
            on_disconnected=self._nats.disconnected,
            on_reconnected=self._nats.reconnected,
            on_error=self._nats.client_error,
            on_closed=self._nats.closed,
            on_rejected=self._nats.credentials_refused,
            extra_options=self._nats_options,
        )
        self._nats.client = self._nc
        self._nats.up()
        try:
            js = self._js = self._nc.jetstream(timeout=cfg.ack_timeout)
            kv = None
            self._setting_up = anyio.CancelScope()
            if self.stopping.is_set():
                self._setting_up.cancel()
            with self._setting_up:
                kv = await retry_nats(
                    "stream and bucket set-up",
                    lambda: ensure_infrastructure(js, cfg),
                    on_fault=self._nats.fault,
                )
            if kv is None:
                return  # stopped while NATS refused or could not answer the set-up
            coordination = self.config.coordination
            if coordination.mode == "leases":
                members, leases = await retry_nats(
                    "coordination buckets set-up",
                    lambda: ensure_coordination(js, coordination, cfg.replicas),
                    on_fault=self._nats.fault,
                )
                self.ownership = Ownership(
                    members,
                    leases,
                    self.replica_id,
                    coordination.lease_ttl,
                    budgets_of=_fleet_budgets,
                    apply_shares=self._apply_fleet_shares,
                    denials=self._nats.denials,
                    on_fault=self._nats.fault,
                )
            self.infrastructure_ready = True
            self.store = StateStore(kv, denials=self._nats.denials, redactor=self.redactor)
            self.publisher = Publisher(
                self._nc,
                subject_prefix=cfg.subject_prefix,
                ack_timeout=cfg.ack_timeout,
                on_published=lambda _e, seconds: self.metrics.publish_seconds.observe(seconds),
                on_failure=lambda _why: self.metrics.publish_failures.inc(),
                scrub=self.redactor.event,
                denials=self._nats.denials,
            )
            self._new_loop = partial(
                SourceLoop,
                js=js,
                stream=cfg.stream,
                subject_prefix=cfg.subject_prefix,
                store=self.store,
                publisher=self.publisher,
                privacy=self.privacy,
                redactor=self.redactor,
                metrics=self.metrics,
                drains=self._drains,
                ownership=self.ownership,
                on_nats_fault=self._nats.fault,
                on_published=self.recent_events.add,
            )
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            # no pool cap: a request waiting for a pooled connection after the limiter let it start
            # would reach the vendor late and crowd the vendor's window; in-flight requests are already
            # bounded by the limiters (rate x latency) and the request timeouts
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            # trust_env: vendor requests go through HTTPS_PROXY / HTTP_PROXY (and skip NO_PROXY) when set
            async with aiohttp.ClientSession(
                timeout=timeout, connector=connector, trace_configs=[limiter_trace()], trust_env=True
            ) as http:
                self._ctx = ctx = AdapterContext(
                    http=http,
                    limiters=self.limiters,
                    observe_request=self.metrics.observe_request,
                    observe_reads=self.metrics.observe_reads,
                    observe_unreadable=self._count_unreadable,
                )
                sources = self.build_sources(ctx)
                async with anyio.create_task_group() as helpers:
                    for task in extra_tasks or []:
                        helpers.start_soon(task, self)
                    helpers.start_soon(self._enforce_grace)
                    if self.ownership is not None:
                        helpers.start_soon(self.ownership.keep_membership)
                        helpers.start_soon(self.ownership.keep_leases)
                    helpers.start_soon(watch_stream, js, cfg.stream, self.stream_facts)
                    if self.config.push.enabled:
                        self.push = PushServer(
                            self.config.push,
                            build_receivers(
                                self.config.push,
                                self.config.sources,
                                self._tencent_sessions,
                                self._count_unreadable,
                            ),
                            self.publisher,
                            self.privacy,
                            on_outcome=lambda v, a, o: self.metrics.pushes.labels(v, a, o).inc(),
                        )
                        helpers.start_soon(serve_push, self.push, self._push_bound)
                    async with anyio.create_task_group() as loops:
                        self._loops = loops
                        for source in sources:
                            self._start_source(source)
                        log.info(
                            "poller started", extra={"sources": len(sources), "replica": self.replica_id}
                        )
                        self.started.set()
                        helpers.start_soon(self._apply_reloads)
                        await self.stopping.wait()
                    if self.ownership is not None:
                        # every loop has released its lease: the others may take the accounts now
                        with self._drains.shielded(), anyio.move_on_after(2):
                            await self.ownership.leave()
                    helpers.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await close_nats(self._nc)
            log.info("poller stopped")

    def _start_source(self, source: Source) -> None:
        key = SourceId(vendor=source.vendor, account=source.account, scope=source.scope).key
        running = _RunningSource(status=SourceStatus(source=source, key=_kv_key(key)))
        self.statuses[key] = running.status
        self._running[key] = running
        assert self._loops is not None
        self._loops.start_soon(self._run_source, key, running)

    async def _run_source(self, key: str, running: _RunningSource) -> None:
        """The source's loop, and its watch-list control subject while the loop runs."""
        source = running.status.source
        loop = self._new_loop(stopping=running.stopping, poll_scopes=running.poll_scopes)
        try:
            async with anyio.create_task_group() as tg:
                watch = getattr(source, "watch", None)
                if isinstance(watch, WatchList):
                    prefix = self.config.nats.subject_prefix
                    watched = [(source.vendor, source.account, watch)]
                    tg.start_soon(serve_control, self._nc, prefix, watched, self.redactor)
                if isinstance(source, TencentCccSource) and self.config.push.enabled:
                    tg.start_soon(source.answer_pushes)
                await loop.run(running.status)
                tg.cancel_scope.cancel()
        finally:
            if running.stopping.is_set() and not self.stopping.is_set() and self._running.get(key) is running:
                # stopped by a reload: it no longer exists for readiness, status and the gauges (a
                # loop that ended on its own, fenced out by another writer, stays visible)
                del self._running[key]
                self.statuses.pop(key, None)
                labels = (source.vendor, source.account, source.scope)
                for gauge in (self.metrics.source_degraded, self.metrics.entities, self.metrics.commit_lag):
                    with contextlib.suppress(KeyError):
                        gauge.remove(*labels)
            running.done.set()

    def _tencent_sessions(self, account: str, sdk_app_id: int) -> SessionTasks | None:
        """The source polling this Tencent app here now: it tells a pushed call's task."""
        key = SourceId(vendor=TENCENT, account=account, scope=str(sdk_app_id)).key
        running = self._running.get(key)
        if running is None or not running.status.owned or running.status.fenced:
            return None
        source = running.status.source
        return source if isinstance(source, TencentCccSource) else None

    async def _apply_reloads(self) -> None:
        async for config in self._reloads:
            await self._reload(config)

    async def _reload(self, config: Config) -> None:
        """Stop what is removed or changed (each drains and commits), then start what is new or changed."""
        plan = plan_reload(self.config, config)
        self.redactor.learn(secret_values(config))  # before a new source can log or publish anything
        if plan.needs_restart:
            log.warning(
                "configuration reload: these sections take effect on restart",
                extra={"sections": ",".join(plan.needs_restart)},
            )
        stopping = [
            running
            for running in self._running.values()
            if (running.status.source.vendor, running.status.source.account) in plan.stop
        ]
        for running in stopping:
            running.stop()
        for running in stopping:
            await running.done.wait()
        if self.stopping.is_set():
            return
        assert self._ctx is not None
        started = 0
        for account in plan.start:
            try:
                sources = self._sources_of(account)
            except Exception:  # the new file decoded, but the adapter refuses it: the rest goes on
                log.exception(
                    "configuration reload: source not started",
                    extra={"vendor": account.vendor, "account": account.account},
                )
                continue
            for source in sources:
                self._start_source(source)
                started += 1
        self.config = running_part(self.config, config)
        log.info(
            "configuration reloaded",
            extra={"stopped": len(stopping), "started": started, "sources": len(self._running)},
        )

    def _sources_of(self, account: AccountConfig) -> list[Source]:
        assert self._ctx is not None
        return list(VENDORS[account.vendor].sources(account, self._ctx))


def _fleet_budgets(account_key: str) -> frozenset[tuple[str, str]]:
    """The fleet-wide limits an account (``vendor.account``) spends: its vendor's fleet APIs."""
    vendor = account_key.split(".", 1)[0]
    spec = VENDORS.get(vendor)
    return frozenset((vendor, api) for api in spec.fleet_apis) if spec else frozenset()


def _source_view(key: str, status: SourceStatus, now: float, redact: Redact) -> SourceView:
    source = status.source
    watch = getattr(source, "watch", None)
    fault = status.commit_fault
    return SourceView(
        key=key,
        vendor=source.vendor,
        account=source.account,
        scope=source.scope,
        poll_interval=source.poll_interval,
        started=status.started,
        last_success=status.last_success,
        degraded=status.degraded,
        owned=status.owned,
        failure_reason=status.failure_reason,
        failure=status.failure,
        apis=list(source.apis),
        last_poll_started=status.last_poll_started,
        last_poll_ended=status.last_poll_ended,
        last_outcome=status.last_outcome,
        last_error=None if status.last_error is None else redact(status.last_error),
        last_error_at=status.last_error_at,
        next_poll_due=status.next_poll_due,
        consecutive_failures=status.consecutive_failures,
        degraded_since_epoch=status.degraded_since_epoch,
        entities=status.entities,
        stream_seq=status.stream_seq,
        commit_lag=max(0.0, now - status.caught_up),
        limits=[
            LimitView(api=api, in_window=limiter.in_window(now), limit=limiter.effective_limit(now))
            for api, limiter in source.limiters_in_use.items()
        ],
        watch_list=watch.watched() if isinstance(watch, WatchList) else None,
        task_states=status.campaign_states(),
        commit_refused=None if fault is None else redact(f"{fault.code}: {fault.detail}"),
    )


def _kv_key(source_key: str) -> str:
    return ".".join(kv_key_token(token) for token in source_key.split("."))
