"""Only a prefix of a cycle's events stored, then the poller stops: a restart loses no call.

The stream is limited (``max_msgs`` with ``discard=new``) so that exactly the first two events of
a BYRobot cycle land; the shutdown grace then cuts the publish. Whatever is stored must not stop
the rest from being read again: a task's terminal status and progress in the stream would make the
replay mark it finished, and its last calls would never be asked for again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.js.api import DiscardPolicy

from poller.tools.natsserver import NatsServer
from schemas import CallFinished, TaskState, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.vendors.test_byrobot import COMPANY, byrobot_source, finished_calls, simulator


async def _with_stream(url: str, change: Callable[[Any], Awaitable[int]]) -> int:
    nc = await nats.connect(url)
    try:
        return await change(nc.jetstream())
    finally:
        await nc.close()


def limit_to(extra: int) -> Callable[[Any], Awaitable[int]]:
    """Let the stream take ``extra`` more messages and reject the rest (None: no limit)."""

    async def change(js: Any) -> int:
        info = await js.stream_info("AICC")
        config = info.config
        config.max_msgs = info.state.messages + extra if extra >= 0 else -1
        config.discard = DiscardPolicy.NEW if extra >= 0 else DiscardPolicy.OLD
        await js.update_stream(config)
        return int(info.state.messages)

    return change


async def stored(url: str) -> int:
    async def count(js: Any) -> int:
        return int((await js.stream_info("AICC")).state.messages)

    return await _with_stream(url, count)


async def test_a_cycle_stored_only_in_part_loses_no_call_after_a_restart(nats_server: NatsServer) -> None:
    sim = simulator()
    async with sim:
        task = sim.add_task(COMPANY, phones=8, status=1, finished=(0,))
        config = make_config(nats_server.url, [byrobot_source(sim)], shutdown_grace=0.5)
        async with running(config) as service:
            await polls_done(service, 2)
            before = await _with_stream(nats_server.url, limit_to(2))
            # the task finishes with five more calls: seven events, of which two are stored
            sim.finish_calls(task, (0, 2, 1, 0, 6))
            sim.set_status(task, 2)

            async def prefix_stored() -> bool:
                return await stored(nats_server.url) == before + 2

            await wait_until(prefix_stored)
            assert service.publisher is not None
            await wait_until(lambda: service.publisher is not None and service.publisher.stats.failures > 0)
        await _with_stream(nats_server.url, limit_to(-1))

        async with running(config) as service:
            await polls_done(service, 3)
        events = await stream_events(nats_server.url)

    calls = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert sorted(calls) == sorted(finished_calls(sim))  # six calls, each once
    finished = [
        e for e in events if isinstance(e, TaskStatusChanged) and e.current.state is TaskState.COMPLETED
    ]
    assert len(finished) == 1
    # every call of the task is stored before the status that ends it
    assert max(i for i, e in enumerate(events) if isinstance(e, CallFinished)) < events.index(finished[0])


async def test_a_finished_task_with_more_new_calls_than_one_cycle_reads_gets_them_all(
    nats_server: NatsServer,
) -> None:
    sim = simulator()
    async with sim:
        task = sim.add_task(COMPANY, phones=9, status=1, finished=(0,))
        # two calls per page, one page per task per cycle
        config = make_config(nats_server.url, [byrobot_source(sim, max_call_pages=1)])
        async with running(config) as service:
            await polls_done(service, 2)
            sim.finish_calls(task, (0, 2, 1, 0, 6, 0, 1))
            sim.set_status(task, 2)
            await polls_done(service, 6)
        # and across a restart, with the task already finished in the committed state
        sim.finish_calls(task, (0,))
        async with running(config) as service:
            await polls_done(service, 4)
        events = await stream_events(nats_server.url)

    calls = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert sorted(calls) == sorted(finished_calls(sim))


async def test_a_backlog_of_calls_left_when_a_running_task_finishes_is_read_after_a_restart(
    nats_server: NatsServer,
) -> None:
    sim = simulator()
    async with sim:
        task = sim.add_task(COMPANY, phones=9, status=1, finished=(0,))
        config = make_config(nats_server.url, [byrobot_source(sim, max_call_pages=1)])
        async with running(config) as service:
            await polls_done(service, 2)
            sim.finish_calls(task, (0, 2, 1, 0, 6, 0, 1))
            await polls_done(service, 1)  # part of the backlog is read while the task still runs
            sim.set_status(task, 2)
            await polls_done(service, 1)
        async with running(config) as service:
            await polls_done(service, 6)
        events = await stream_events(nats_server.url)

    calls = [e.call_id for e in events if isinstance(e, CallFinished)]
    assert sorted(calls) == sorted(finished_calls(sim))
