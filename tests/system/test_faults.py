"""Vendor faults on real processes: classified, one degraded/recovered pair per episode, never a
false change, and one failing vendor never delays another."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from poller.simulators.base import Fault
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import DegradeReason, SourceDegraded, SourceRecovered, TaskAppeared, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000100

FAULTS = [
    (Fault.SERVER_ERROR, DegradeReason.SERVER_ERROR),
    (Fault.HANG, DegradeReason.TIMEOUT),
    (Fault.DROP, DegradeReason.UNREACHABLE),
    (Fault.MALFORMED, DegradeReason.BAD_RESPONSE),
    (Fault.TRUNCATED, DegradeReason.BAD_RESPONSE),
    (Fault.SCHEMA_DRIFT, DegradeReason.BAD_RESPONSE),
    (Fault.THROTTLE, DegradeReason.THROTTLED),
    (Fault.AUTH, DegradeReason.AUTH_FAILED),
]


async def test_each_fault_is_one_classified_episode_and_never_a_change(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        tasks = [sim.add_task(APP, state=1) for _ in range(4)]  # two pages of 3
        source = tencent_source(sim, [APP], request_timeout=0.4)
        config = make_config(nats_server.url, [source])
        async with running(config) as service:
            await polls_done(service, 1)
            for fault, _reason in FAULTS:
                # on the listing only: a fault on every API would hit whichever request comes next,
                # the listing or this cycle's call records, and the episode would name either
                sim.inject(fault, api="DescribeAutoCalloutTasks")
                await wait_until(lambda: any(s.degraded for s in service.statuses.values()), timeout=20)
                await polls_done_failing(service)
                sim.clear_faults()
                await wait_until(lambda: not any(s.degraded for s in service.statuses.values()), timeout=20)
            # the world still moves and is still seen
            sim.set_state(APP, tasks[0], 2)
            await polls_done(service, 2)

    events = await stream_events(nats_server.url)
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds == {
        "TaskAppeared": 4,
        "SourceDegraded": len(FAULTS),
        "SourceRecovered": len(FAULTS),
        "TaskStatusChanged": 1,
    }
    degraded = [e for e in events if isinstance(e, SourceDegraded)]
    assert [e.reason for e in degraded] == [reason for _, reason in FAULTS]
    assert [e.episode for e in degraded] == list(range(1, len(FAULTS) + 1))
    recovered = [e for e in events if isinstance(e, SourceRecovered)]
    assert [e.episode for e in recovered] == list(range(1, len(FAULTS) + 1))
    assert all(e.api == "DescribeAutoCalloutTasks" for e in degraded)
    assert SECRET_KEY not in repr(events)
    (change,) = [e for e in events if isinstance(e, TaskStatusChanged)]
    assert (change.previous.raw, change.current.raw) == ("1", "2")
    assert sum(isinstance(e, TaskAppeared) for e in events) == 4


async def polls_done_failing(service: object) -> None:
    """Let at least one more failing cycle pass, to prove an episode gives only one event."""
    import anyio

    await anyio.sleep(0.6)


@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.MALFORMED, Fault.HANG])
async def test_a_failed_page_mid_listing_never_makes_tasks_vanish(
    nats_server: NatsServer, fault: Fault
) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        for _ in range(7):
            sim.add_task(APP, state=1)
        config = make_config(nats_server.url, [tencent_source(sim, [APP], request_timeout=0.3)])
        async with running(config) as service:
            await polls_done(service, 1)
            # the first page answers, every later request fails: the listing is never complete
            sim.inject(fault, after=1)
            await wait_until(lambda: any(s.degraded for s in service.statuses.values()), timeout=20)
            sim.clear_faults()
            await wait_until(lambda: not any(s.degraded for s in service.statuses.values()), timeout=20)
    events = await stream_events(nats_server.url)
    assert not [e for e in events if type(e).__name__ == "TaskVanished"]
    assert Counter(type(e).__name__ for e in events) == {
        "TaskAppeared": 7,
        "SourceDegraded": 1,
        "SourceRecovered": 1,
    }


async def test_a_hanging_vendor_never_delays_another(nats_server: NatsServer) -> None:
    async with (
        TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as healthy,
        TencentCccSimulator(credentials={"AKIDother": "other-secret"}) as hanging,
    ):
        task = healthy.add_task(APP, state=0)
        hanging.add_task(APP, state=0)
        hanging.inject(Fault.HANG)
        sick = tencent_source(hanging, [APP], request_timeout=30.0)
        sick.update(account="tc-sick", secret_id="AKIDother", secret_key="other-secret")
        config = make_config(nats_server.url, [tencent_source(healthy, [APP]), sick])
        async with running(config) as service:
            healthy_key = next(k for k in service.statuses if "tc-main" in k)

            await wait_until(lambda: service.statuses[healthy_key].last_success is not None, timeout=5)
            latencies = []
            for state in (1, 5, 1, 2):
                changed_at = time.monotonic()
                healthy.set_state(APP, task, state)

                async def seen(state: int = state) -> bool:
                    events = await stream_events(nats_server.url)
                    return any(
                        isinstance(e, TaskStatusChanged)
                        and e.current.raw == str(state)
                        and e.account == "tc-main"
                        for e in events[-1:]
                    )

                await wait_until(seen, timeout=5)
                latencies.append(time.monotonic() - changed_at)
            hanging_requests = hanging.log.count()
        assert hanging_requests >= 1  # the sick vendor was being polled (and hanging) the whole time
    # every change of the healthy vendor arrived within a few poll intervals, not a 30 s timeout
    assert max(latencies) < 3.0, latencies
