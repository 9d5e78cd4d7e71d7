"""The KV state store against a real nats-server: a committed state loads back exactly, an
incremental commit rewrites only the chunks it must, and a new layout leaves no live garbage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js.errors import KeyNotFoundError

from poller.pipeline.state import EntityState, Health, SourceState
from poller.pipeline.store import StateStore, chunk_of, chunks_needed
from poller.tools.natsserver import NatsServer


@pytest.fixture
async def kv(nats_server: NatsServer) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_server.url)
    try:
        yield await nc.jetstream().create_key_value(bucket="store_test", history=1)
    finally:
        await nc.close()


def entities(n: int, raw: str = "Executing") -> dict[str, EntityState]:
    return {
        f"job-{i}": EntityState(kind="job", state="running", raw=raw, seq=1, parent="g") for i in range(n)
    }


async def test_a_committed_state_loads_back_exactly_in_a_new_process(kv: Any) -> None:
    health = Health(episode=3, degraded=True, api="list", reason="server-error", since=1700000000.0)
    state = SourceState(entities=entities(10), cursors={"calls.7": 41}, health=health, stream_seq=99)
    await StateStore(kv).commit("v.a.s", state, changed=None)
    loaded = await StateStore(kv).load("v.a.s")
    assert loaded == state
    assert await StateStore(kv).load("v.a.other") == SourceState()


async def revision(kv: Any, key: str) -> int | None:
    """The key's revision; None when it does not exist or was purged."""
    try:
        return int((await kv.get(key)).revision)
    except KeyNotFoundError:
        return None


async def test_an_incremental_commit_rewrites_only_the_changed_chunk(kv: Any) -> None:
    store = StateStore(kv, writer="w")  # chunk keys carry the writer: src.g<generation>-<writer>.<chunk>
    many = entities(9000)
    chunks = chunks_needed(len(many))
    assert chunks > 1
    await store.commit("src", SourceState(entities=many, stream_seq=1), changed=None)
    keys = ["src.meta"] + [f"src.g1-w.{chunk}" for chunk in range(chunks)]
    before = {key: await revision(kv, key) for key in keys}
    assert None not in before.values()
    many["job-7"] = EntityState(kind="job", state="completed", raw="Succeeded", seq=2, parent="g")
    await store.commit("src", SourceState(entities=many, stream_seq=2), changed={"job-7"})
    rewritten = {key for key in keys if await revision(kv, key) != before[key]}
    assert rewritten == {f"src.g1-w.{chunk_of('job-7', chunks)}", "src.meta"}
    assert (await StateStore(kv).load("src")) == SourceState(entities=many, stream_seq=2)


async def test_a_new_layout_replaces_the_old_generations_chunks(kv: Any) -> None:
    store = StateStore(kv, writer="w")
    await store.commit("src", SourceState(entities=entities(10)), changed=None)
    assert await revision(kv, "src.g1-w.0") is not None
    grown = entities(9000, raw="Succeeded")
    await store.commit("src", SourceState(entities=grown), changed=set(grown))
    chunks = chunks_needed(len(grown))
    assert await revision(kv, "src.g1-w.0") is None  # the old generation is purged
    assert all([await revision(kv, f"src.g2-w.{chunk}") is not None for chunk in range(chunks)])
    assert (await StateStore(kv).load("src")).entities == grown
