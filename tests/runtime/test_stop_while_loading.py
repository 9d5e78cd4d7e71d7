"""A stop while a source still waits for its committed state (NATS stopped answering) ends the source.

Loading the state and replaying the stream retry until NATS answers; a stop must not wait for that.
"""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest

from poller.runtime.service import Service
from poller.tools.natsserver import NatsServer
from tests.helpers import make_config, wait_until
from tests.vendors.test_byrobot import byrobot_source, simulator


@pytest.mark.slow
async def test_a_stop_while_the_state_load_waits_for_nats_ends_within_the_bound(
    nats_server: NatsServer,
) -> None:
    assert nats_server.process is not None
    pid = nats_server.process.pid
    sim = simulator()
    async with sim:
        config = make_config(nats_server.url, [byrobot_source(sim)], shutdown_grace=0.5)
        service = Service(config)

        async def silence_nats(_service: Service) -> None:
            os.kill(pid, signal.SIGSTOP)  # runs before the sources' loops load their state

        try:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(service.run, [silence_nats])
                    await wait_until(service.started.is_set)
                    await anyio.sleep(1.0)  # the load is retrying against the silent server
                    assert all(status.last_success is None for status in service.statuses.values())
                    asked = time.monotonic()
                    service.stop()
        finally:
            os.kill(pid, signal.SIGCONT)
    took = time.monotonic() - asked
    # the grace, then closing the connection to a server that does not answer (at most 5 s)
    assert took <= 0.5 + 5.5, f"stop took {took:.1f} s"
