"""Wires the steps together under one anyio task group.

NATS connection and set-up (:mod:`~poller.runtime.connection`), one loop per source
(:mod:`~poller.runtime.source_loop`) with its committer (:mod:`~poller.runtime.committer`), the
control subjects (:mod:`~poller.runtime.control`) and the ops port (:mod:`poller.ops`). On stop,
polling is cancelled at once while publishes and commits already under way get ``shutdown_grace``
seconds to finish (:mod:`~poller.runtime.drain`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import anyio
from prometheus_client import generate_latest

from poller.config import Config
from poller.ops.http import serve_http
from poller.ops.metrics import Metrics
from poller.ops.status import ServiceView, SourceView
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.publisher import Publisher
from poller.pipeline.store import StateStore, kv_key_token
from poller.runtime.connection import connect, ensure_infrastructure, retry_nats
from poller.runtime.control import serve_control
from poller.runtime.drain import Drains
from poller.runtime.sharding import owns
from poller.runtime.source_loop import SourceLoop
from poller.runtime.status import SourceStatus
from poller.transport import LimiterRegistry, limiter_trace
from poller.vendors import VENDORS
from poller.vendors.base import AdapterContext, Source
from poller.vendors.watch import WatchList

__all__ = ["ExtraTask", "Service"]

log = logging.getLogger("poller.service")
ExtraTask = Callable[["Service"], Coroutine[Any, Any, None]]


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
        self._drains = Drains()
        self._nc: Any = None
        self._js: Any = None
        self.publisher: Publisher | None = None
        #: the ops HTTP port once bound
        self.http_port: int | None = None
        self.store: StateStore | None = None

    @property
    def nats(self) -> Any:
        """The live NATS connection (for control subjects and ops); None before ``run`` connects."""
        return self._nc

    @property
    def jetstream(self) -> Any:
        return self._js

    # -- the status protocol (poller.ops.status) ---------------------------------------------------
    def status_view(self) -> ServiceView:
        return ServiceView(
            nats_connected=self.nats_connected,
            stream_and_bucket=self.infrastructure_ready,
            stopping=self.stopping.is_set(),
            sources=[
                SourceView(
                    key=key,
                    vendor=status.source.vendor,
                    account=status.source.account,
                    scope=status.source.scope,
                    poll_interval=status.source.poll_interval,
                    started=status.started,
                    last_success=status.last_success,
                    degraded=status.degraded,
                )
                for key, status in self.statuses.items()
            ],
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
        for (vendor, api, credential), limiter in self.limiters.items():
            # a credential id is not a secret, but it is not the dashboard's business either
            label = hashlib.sha256(credential.encode()).hexdigest()[:12]
            self.metrics.limiter_in_window.labels(vendor, api, label).set(limiter.in_window(now))
            self.metrics.limiter_limit.labels(vendor, api, label).set(limiter.effective_limit(now))

    # -- lifecycle ---------------------------------------------------------------------------------
    def build_sources(self, ctx: AdapterContext) -> list[Source]:
        sources: list[Source] = []
        shard = self.config.shard
        for account in self.config.sources:
            if not account.enabled or not owns(account.vendor, account.account, shard.index, shard.count):
                continue
            sources.extend(VENDORS[account.vendor].sources(account, ctx))
        return sources

    def stop(self) -> None:
        """Stop scheduling: cancel polls in flight; publishes and commits under way finish."""
        self.stopping.set()
        for scope in list(self._poll_scopes):
            scope.cancel()

    async def _enforce_grace(self) -> None:
        await self.stopping.wait()
        await anyio.sleep(self.config.shutdown_grace)
        self._drains.cancel_all()

    def _bound(self, port: int) -> None:
        self.http_port = port

    async def run(self, extra_tasks: list[ExtraTask] | None = None) -> None:
        """The ops port is up from the start: /healthz answers and /readyz says 503 while NATS is
        still unreachable, so a liveness probe does not restart a poller that is only waiting."""
        async with anyio.create_task_group() as ops:
            ops.start_soon(serve_http, self, self.config.http, self._bound)
            try:
                await self._run(extra_tasks)
            finally:
                ops.cancel_scope.cancel()

    async def _disconnected(self) -> None:
        self.nats_connected = False
        self.metrics.nats_connected.set(0)
        if not self.stopping.is_set():
            log.warning("NATS disconnected")

    async def _reconnected(self) -> None:
        self.nats_connected = True
        self.metrics.nats_connected.set(1)
        log.info("NATS reconnected")

    async def _run(self, extra_tasks: list[ExtraTask] | None = None) -> None:
        cfg = self.config.nats
        self._nc = await connect(
            cfg,
            on_disconnected=self._disconnected,
            on_reconnected=self._reconnected,
            extra_options=self._nats_options,
        )
        self.nats_connected = True
        self.metrics.nats_connected.set(1)
        try:
            js = self._js = self._nc.jetstream(timeout=cfg.ack_timeout)
            kv = await retry_nats("stream and bucket set-up", lambda: ensure_infrastructure(js, cfg))
            self.infrastructure_ready = True
            self.store = StateStore(kv)
            self.publisher = Publisher(
                js,
                subject_prefix=cfg.subject_prefix,
                ack_timeout=cfg.ack_timeout,
                on_published=lambda _e, seconds: self.metrics.publish_seconds.observe(seconds),
                on_failure=lambda _why: self.metrics.publish_failures.inc(),
            )
            loop = SourceLoop(
                js=js,
                stream=cfg.stream,
                subject_prefix=cfg.subject_prefix,
                store=self.store,
                publisher=self.publisher,
                privacy=self.privacy,
                metrics=self.metrics,
                drains=self._drains,
                stopping=self.stopping,
                poll_scopes=self._poll_scopes,
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
                    http=http,
                    limiters=self.limiters,
                    observe_request=self.metrics.observe_request,
                    observe_reads=self.metrics.observe_reads,
                )
                sources = self.build_sources(ctx)
                for source in sources:
                    key = SourceId(vendor=source.vendor, account=source.account, scope=source.scope).key
                    self.statuses[key] = SourceStatus(source=source, key=_kv_key(key))
                watched = [
                    (s.vendor, s.account, watch)
                    for s in sources
                    if isinstance(watch := getattr(s, "watch", None), WatchList)
                ]
                log.info("poller started", extra={"sources": len(sources)})
                self.started.set()
                async with anyio.create_task_group() as helpers:
                    for task in extra_tasks or []:
                        helpers.start_soon(task, self)
                    helpers.start_soon(self._enforce_grace)
                    helpers.start_soon(serve_control, self._nc, cfg.subject_prefix, watched)
                    async with anyio.create_task_group() as loops:
                        for status in self.statuses.values():
                            loops.start_soon(loop.run, status)
                        await self.stopping.wait()
                    helpers.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._nc.drain() if self._nc.is_connected else await self._nc.close()
            log.info("poller stopped")


def _kv_key(source_key: str) -> str:
    return ".".join(kv_key_token(token) for token in source_key.split("."))
