"""The operator's HTTP port: ``/healthz`` (alive), ``/readyz`` (doing its job), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from poller.service import Service

#: a source that has never succeeded is given this long after start before it counts as not ready
STARTUP_GRACE = 60.0


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """The /readyz body: the verdict, the checks that failed by name, and the facts behind them."""

    ready: bool
    #: names of the failed checks: nats_connected, stream_and_bucket, sources_fresh, not_stopping
    failing: list[str]
    nats_connected: bool
    stream_and_bucket: bool
    stale_sources: list[str]
    stopping: bool


def readiness(service: Service, now: float | None = None) -> Readiness:
    now = time.monotonic() if now is None else now
    stale = []
    for key, status in service.statuses.items():
        allowed = max(3 * status.source.poll_interval, 30.0)
        if status.last_success is None:
            if now - status.started > max(STARTUP_GRACE, allowed):
                stale.append(key)
        elif now - status.last_success > allowed:
            stale.append(key)
    stopping = service.stopping.is_set()
    checks = {
        "nats_connected": service.nats_connected,
        "stream_and_bucket": service.infrastructure_ready,
        "sources_fresh": not stale,
        "not_stopping": not stopping,
    }
    failing = [name for name, passed in checks.items() if not passed]
    return Readiness(
        ready=not failing,
        failing=failing,
        nats_connected=service.nats_connected,
        stream_and_bucket=service.infrastructure_ready,
        stale_sources=sorted(stale),
        stopping=stopping,
    )


def build_app(service: Service) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness(service)
        return web.Response(
            body=msgspec.json.encode(state),
            status=200 if state.ready else 503,
            content_type="application/json",
        )

    async def metrics(_: web.Request) -> web.Response:
        service.refresh_metrics()
        response = web.Response(body=generate_latest(service.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_http(service: Service) -> None:
    """An extra task for ``Service.run``; the bound port lands in ``service.http_port`` (port 0 works)."""
    cfg = service.config.http
    if not cfg.enabled:
        return
    runner = web.AppRunner(build_app(service), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
    await site.start()
    addresses: list[Any] = runner.addresses
    service.http_port = int(addresses[0][1]) if addresses else cfg.port
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
