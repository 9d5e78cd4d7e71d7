"""Tencent CCC end to end on a real nats-server: scripted changes → exactly those events."""

from __future__ import annotations

from collections import Counter

from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import TaskAppeared, TaskState, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events

SECRET_ID = "AKIDsimulatedE2E"
SECRET_KEY = "e2e-secret-key-never-logged"


def tencent_source(sim: TencentCccSimulator, apps: list[int], **extra: object) -> dict[str, object]:
    return {
        "vendor": "tencent-ccc",
        "account": "tc-main",
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "sdk_app_ids": apps,
        "endpoint": sim.url,
        "poll_interval": 0.05,
        "page_size": 3,
        "retries": 1,
        "failure_backoff": 0.2,
        **extra,
    }


async def test_scripted_changes_give_exactly_those_events(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=1) as sim:
        tasks = [sim.add_task(1400000001, state=0) for _ in range(7)]  # 3 pages of 3
        config = make_config(nats_server.url, [tencent_source(sim, [1400000001])])
        script = [(tasks[0], 1), (tasks[5], 1), (tasks[0], 5), (tasks[0], 1), (tasks[5], 2), (tasks[6], 1)]
        async with running(config) as service:
            await polls_done(service, 1)
            for task_id, state in script:
                sim.set_state(1400000001, task_id, state)
                await polls_done(service, 2)
        events = await stream_events(nats_server.url)
        throttled_in_first_run = sim.log.count("throttled")

        # restart between two polls: nothing new is published
        async with running(config) as service:
            await polls_done(service, 3)
        assert await stream_events(nats_server.url) == events

    kinds = Counter(type(e).__name__ for e in events)
    assert kinds == {"TaskAppeared": 7, "TaskStatusChanged": len(script)}
    appeared = [e for e in events if isinstance(e, TaskAppeared)]
    assert {e.entity_id for e in appeared} == {str(t) for t in tasks}
    assert all(e.current.state is TaskState.PENDING and e.current.raw == "0" for e in appeared)
    changes = [e for e in events if isinstance(e, TaskStatusChanged)]
    previous = {str(t): "0" for t in tasks}
    expected = []
    for task_id, state in script:
        expected.append((str(task_id), previous[str(task_id)], str(state)))
        previous[str(task_id)] = str(state)
    assert [(e.entity_id, e.previous.raw, e.current.raw) for e in changes] == expected
    assert [e.current.state for e in changes] == [
        TaskState.RUNNING,
        TaskState.RUNNING,
        TaskState.PAUSED,
        TaskState.RUNNING,
        TaskState.COMPLETED,
        TaskState.RUNNING,
    ]
    # A→B→A→B: the two 1→5… and 5→1 changes of one task have distinct ids
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.vendor == "tencent-ccc" and e.account == "tc-main" for e in events)
    assert throttled_in_first_run == 0
