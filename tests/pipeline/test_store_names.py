"""Entity names in the state bucket, against a real nats-server: the differ, the publisher (its
scrub), the stream and the KV store as the service wires them. Whatever the privacy policy, the
bucket's bytes hold neither the mobile number nor the name a vendor put in a task name; a restart
(from the bucket, or replayed from the stream) followed by a steady sweep rewrites nothing; the
vanish, which takes its name from state, publishes the name the appearance did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
import pytest
from nats.js.api import StreamConfig

from poller.pipeline.differ import SweepDiff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import PersonalDataPolicy, Privacy
from poller.pipeline.publisher import Publisher
from poller.pipeline.redact import Redactor
from poller.pipeline.replay import replay
from poller.pipeline.snapshot import EntitySnapshot, Observation
from poller.pipeline.state import EntityState, SourceState
from poller.pipeline.store import Meta, StateStore
from poller.tools.natsserver import NatsServer
from schemas import EntityKind, TaskAppeared, TaskState, TaskVanished
from tests.helpers import bucket_bytes, stream_events

MOBILE = "13800138000"
NAME = "王小明"
#: a task name as vendors' consoles let operators type them
RAW = f"回访 {MOBILE} 客户姓名：{NAME}"
PLAIN = "spring campaign"
STREAM = "NAMES"
SOURCE = SourceId(vendor="tencent-ccc", account="a", scope="1400000001")
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Any]:
    client = await nats.connect(nats_server.url)
    try:
        await client.jetstream().add_stream(StreamConfig(name=STREAM, subjects=["kvn.>"]))
        yield client
    finally:
        await client.close()


def listing(*ids: str) -> Observation:
    """A complete listing, in new snapshot objects each time (as a restarted adapter reads it)."""
    names = {"t1": RAW, "t2": PLAIN}
    return Observation(
        entities=[
            EntitySnapshot(kind=EntityKind.TASK, id=i, state=TaskState.RUNNING, raw_state="1", name=names[i])
            for i in ids
        ],
        complete=True,
    )


def leaks(data: bytes) -> list[str]:
    found = [what for what, text in (("mobile", MOBILE), ("name", NAME)) if text.encode() in data]
    # any seven digits of the number in a row (a masked number keeps the first three and last two)
    found += [f"digits {MOBILE[i : i + 7]}" for i in range(5) if MOBILE[i : i + 7].encode() in data]
    return found


@pytest.mark.parametrize("policy", list(PersonalDataPolicy))
async def test_the_bucket_keeps_no_personal_data_of_a_task_name_and_a_restart_rewrites_nothing(
    nc: Any, policy: PersonalDataPolicy
) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=f"names_{policy.value}", history=1)
    privacy = Privacy(policy, salt="pepper")
    redactor = Redactor(["a-configured-secret"], privacy)
    publisher = Publisher(nc, subject_prefix="kvn", scrub=redactor.event)
    key = SOURCE.key

    async def cycle(state: SourceState, observation: Observation) -> tuple[SourceState, set[str]]:
        d = SweepDiff(SOURCE, state, privacy, redactor=redactor).finish(observation, NOW)
        if d.events:
            d.state.stream_seq = await publisher.publish(d.events, key)
        return d.state, d.changed

    store = StateStore(kv, redactor=redactor)
    first, changed = await cycle(await store.load(key), listing("t1", "t2"))
    await store.commit(key, first, changed)
    assert leaks(await bucket_bytes(kv)) == []
    assert first.entities["t2"].name == PLAIN  # nothing to redact: kept as listed

    # a restart: the state loaded from the bucket holds the redacted name, the listing the raw one
    restarted = StateStore(kv, redactor=redactor)
    loaded = await restarted.load(key)
    assert loaded.entities == first.entities
    steady, changed = await cycle(loaded, listing("t1", "t2"))
    assert changed == set() and steady.entities == loaded.entities

    # a restart whose commit was lost: the state is rebuilt from the (scrubbed) stream
    rebuilt = SourceState()
    await replay(js, STREAM, "kvn.>", key, rebuilt, names=redactor.kept)
    assert {i: e.name for i, e in rebuilt.entities.items()} == {i: e.name for i, e in first.entities.items()}
    steady, changed = await cycle(rebuilt, listing("t1", "t2"))
    assert changed == set()

    # t1 vanishes: its event takes the name from state, and the stream gets what the appearance got
    gone, changed = await cycle(loaded, listing("t2"))
    await restarted.commit(key, gone, changed)
    assert leaks(await bucket_bytes(kv)) == []
    events = await stream_events(nc.connected_url.geturl(), STREAM)
    appeared = next(e for e in events if isinstance(e, TaskAppeared) and e.entity_id == "t1")
    vanished = next(e for e in events if isinstance(e, TaskVanished))
    assert vanished.entity_id == "t1" and vanished.name is not None and not leaks(vanished.name.encode())
    if policy is PersonalDataPolicy.KEEP:
        # events carry personal data by the operator's choice; the state never did, nor the vanish
        assert appeared.name == RAW
        assert vanished.name == redactor.kept(RAW)
    else:
        assert vanished.name == appeared.name
        assert not leaks(appeared.name.encode() if appeared.name else b"")


async def test_a_rename_is_still_taken_and_kept_redacted(nc: Any) -> None:
    kv = await nc.jetstream().create_key_value(bucket="names_rename", history=1)
    redactor = Redactor()
    store = StateStore(kv, redactor=redactor)
    plain = SweepDiff(SOURCE, SourceState(), Privacy(), redactor=redactor).finish(listing("t2"), NOW)
    renamed = msgspec.structs.replace(listing("t2").entities[0], name=RAW)
    d = SweepDiff(SOURCE, plain.state, Privacy(), redactor=redactor).finish(
        Observation(entities=[renamed], complete=True), NOW
    )
    assert d.events == [] and d.changed == {"t2"}
    await store.commit(SOURCE.key, d.state, None)
    assert d.state.entities["t2"].name == redactor.kept(RAW) != RAW
    assert leaks(await bucket_bytes(kv)) == []


async def test_a_state_written_with_raw_names_is_redacted_by_its_next_commit(nc: Any) -> None:
    kv = await nc.jetstream().create_key_value(bucket="names_legacy", history=1)
    raw = EntityState(kind="task", state="running", raw="1", seq=1, name=RAW)
    # as a poller before names were kept redacted wrote it: no names_kept in its meta
    legacy = {"generation": 1, "writer": "old", "chunks": 1, "stream_seq": 3}
    await kv.put("src.meta", msgspec.msgpack.encode(legacy))
    await kv.put("src.g1-old.0", msgspec.msgpack.encode({"t1": raw}))
    assert leaks(await bucket_bytes(kv)) != []
    store = StateStore(kv)
    loaded = await store.load("src")
    assert loaded.entities["t1"].name == Redactor().kept(RAW) and loaded.stream_seq == 3
    # a steady sweep changes nothing, yet a commit is due: it rewrites every chunk
    assert store.names_pending("src")
    await store.commit("src", loaded, set())
    assert not store.names_pending("src")
    assert leaks(await bucket_bytes(kv)) == []
    meta = msgspec.msgpack.decode((await kv.get("src.meta")).value, type=Meta)
    assert meta.names_kept
    again = StateStore(kv)
    assert (await again.load("src")).entities == loaded.entities and not again.names_pending("src")
