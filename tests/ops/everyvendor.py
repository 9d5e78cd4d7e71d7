"""A poller over every vendor's demo simulator, on a real nats-server, with its ops port bound."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from poller.runtime.service import Service
from poller.simulators.registry import DemoSetup, demo_setups
from poller.tools.natsserver import NatsServer
from tests.helpers import make_config, polls_done, running, wait_until

__all__ = ["every_vendor"]


@contextlib.asynccontextmanager
async def every_vendor(nats_server: NatsServer) -> AsyncIterator[tuple[Service, dict[str, DemoSetup]]]:
    """A poller over every vendor's simulator (a context manager: the task group stays in one task)."""
    setups = demo_setups(seed=3)
    sources: list[dict[str, Any]] = []
    for setup in setups.values():
        await setup.simulator.start()
        sources.extend(setup.sources(setup.simulator.url))
    config = make_config(nats_server.url, sources, http={"enabled": True, "host": "127.0.0.1", "port": 0})
    try:
        async with running(config) as service:
            await wait_until(lambda: service.http_port is not None)
            await polls_done(service, 1)
            yield service, setups
    finally:
        for setup in setups.values():
            await setup.simulator.stop()
