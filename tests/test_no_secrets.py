"""Credentials never appear in logs, reprs, exceptions or events; phone numbers never in logs."""

from __future__ import annotations

import logging

import pytest

from poller.simulators.base import Fault
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000400


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Messages, extras and tracebacks of every record, as a handler would see them."""
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.extend(repr(v) for v in record.__dict__.values())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


async def test_a_full_run_with_failures_logs_no_secret(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        sim.add_task(APP, state=1)
        config = make_config(nats_server.url, [tencent_source(sim, [APP])])
        assert SECRET_KEY not in repr(config) and SECRET_KEY not in str(config)
        async with running(config) as service:
            await polls_done(service, 1)
            for fault in (Fault.AUTH, Fault.SERVER_ERROR, Fault.MALFORMED):
                sim.inject(fault)
                await wait_until(lambda: any(s.degraded for s in service.statuses.values()), timeout=15)
                sim.clear_faults()
                await wait_until(lambda: not any(s.degraded for s in service.statuses.values()), timeout=15)
        # a wrong secret: the vendor's signature error is logged, the secret is not
        wrong = make_config(nats_server.url, [tencent_source(sim, [APP], secret_key="wrong-" + SECRET_KEY)])
        async with running(wrong) as service:
            await wait_until(lambda: any(s.degraded for s in service.statuses.values()), timeout=15)
    logged = _everything_logged(caplog)
    assert "poll cycle failed" in logged  # the failure paths really were logged
    assert SECRET_KEY not in logged
    events = await stream_events(nats_server.url)
    assert SECRET_KEY not in repr(events)
