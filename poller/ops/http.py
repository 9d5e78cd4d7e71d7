"""The operator's HTTP port: ``/healthz`` (alive), ``/readyz`` (doing its job), ``/metrics`` (Prometheus),
``/status`` and ``/status.json`` (per source: last poll, errors, limits; :mod:`poller.ops.statuspage`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from poller.config import HttpConfig
from poller.ops.readiness import readiness
from poller.ops.status import StatusProvider
from poller.ops.statuspage import add_status_routes

__all__ = ["build_app", "serve_http"]


def build_app(provider: StatusProvider) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        state = readiness(provider.status_view())
        return web.Response(
            body=msgspec.json.encode(state),
            status=200 if state.ready else 503,
            content_type="application/json",
        )

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=provider.metrics_exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_status_routes(app, provider)
    return app


async def serve_http(provider: StatusProvider, cfg: HttpConfig, on_bound: Callable[[int], None]) -> None:
    """Serve until cancelled; ``on_bound`` gets the bound port (port 0 works)."""
    if not cfg.enabled:
        return
    runner = web.AppRunner(build_app(provider), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
    await site.start()
    addresses: list[Any] = runner.addresses
    on_bound(int(addresses[0][1]) if addresses else cfg.port)
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
