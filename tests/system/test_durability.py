"""Nothing lost, nothing doubled, across a crash between the ack and the state commit."""

from __future__ import annotations

import time
from typing import Any

import anyio

from poller.pipeline.store import StateStore
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from schemas import TaskAppeared, TaskStatusChanged
from tests.helpers import make_config, polls_done, running, stream_events, wait_until
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source

APP = 1400000009


async def _never_commit(*_args: object, **_kwargs: object) -> None:
    """Stands in for a process that dies right after the acks: the commit never happens."""
    await anyio.sleep_forever()


async def test_acked_but_uncommitted_changes_are_not_repeated_or_misreported(nats_server: NatsServer) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=0)
        config = make_config(nats_server.url, [tencent_source(sim, [APP])], shutdown_grace=0.5)
        async with running(config) as service:
            await polls_done(service, 1)

        sim.set_state(APP, task, 1)
        async with running(config) as service:
            assert service.store is not None
            service.store.commit = _never_commit  # type: ignore[method-assign]

            async def published_change() -> bool:
                return any(isinstance(e, TaskStatusChanged) for e in await stream_events(nats_server.url))

            await wait_until(published_change)
        # 0→1 is in the stream but the committed state still says 0; meanwhile the vendor moved on
        sim.set_state(APP, task, 2)
        async with running(config) as service:
            await polls_done(service, 2)

    events = await stream_events(nats_server.url)
    assert [type(e) for e in events] == [TaskAppeared, TaskStatusChanged, TaskStatusChanged]
    changes = [(e.previous.raw, e.current.raw, e.seq) for e in events if isinstance(e, TaskStatusChanged)]
    assert changes == [("0", "1", 2), ("1", "2", 3)]


async def test_state_commit_is_chunked_and_reloads_exactly(nats_server: NatsServer) -> None:
    import nats

    from poller.pipeline.state import EntityState, SourceState

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="chunks_test", history=1)
        store = StateStore(kv)
        empty = await store.load("src")
        assert empty.entities == {}
        entities = {
            f"job-{i}": EntityState(kind="job", state="running", raw="Executing", seq=1) for i in range(9000)
        }
        state = SourceState(entities=entities, cursors={"c": 5}, stream_seq=42)
        await store.commit("src", state, changed=set(entities))
        again = await StateStore(kv).load("src")
        assert again.entities == entities and again.cursors == {"c": 5} and again.stream_seq == 42
        # values that repeat across entities are one shared string each once loaded (memory per entity)
        first, second = again.entities["job-1"], again.entities["job-8999"]
        assert first.kind is second.kind and first.state is second.state and first.raw is second.raw
        keys = await kv.keys()
        assert sum(1 for k in keys if k.startswith("src.g")) > 1  # more than one chunk was needed
        # an incremental commit rewrites only what changed and still reloads exactly
        entities["job-7"] = EntityState(kind="job", state="completed", raw="Succeeded", seq=2)
        await store.commit("src", SourceState(entities=entities, stream_seq=43), changed={"job-7"})
        assert (await StateStore(kv).load("src")).entities == entities
    finally:
        await nc.close()


async def test_a_slow_state_commit_does_not_hold_up_polling_and_the_last_state_is_committed_on_stop(
    nats_server: NatsServer,
) -> None:
    """Commits run beside the polling, coalesced; stopping still commits the newest state."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        tasks = [sim.add_task(APP, state=0) for _ in range(4)]
        config = make_config(nats_server.url, [tencent_source(sim, [APP])], shutdown_grace=5.0)
        commits: list[float] = []
        async with running(config) as service:
            assert service.store is not None
            store = service.store
            real_commit = store.commit

            async def slow_commit(*args: Any, **kwargs: Any) -> None:
                await anyio.sleep(1.5)  # a KV far away, or a big state
                await real_commit(*args, **kwargs)
                commits.append(time.monotonic())

            store.commit = slow_commit  # type: ignore[method-assign]
            started = time.monotonic()
            for task in tasks:
                sim.set_state(APP, task, 1)
                await polls_done(service, 2)
            polled_for = time.monotonic() - started
        # four cycles with changes (and four without) in less than two commits' time: no waiting for them
        assert polled_for < 3.0 and len(commits) < 4, (polled_for, commits)
        async with running(config) as service:
            assert service.store is not None
            state = await service.store.load(service.statuses[next(iter(service.statuses))].key)
    assert {state.entities[str(t)].raw for t in tasks} == {"1"}  # the newest state, committed on stop
