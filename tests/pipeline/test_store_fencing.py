"""Fencing of the KV state store on a real nats-server: a second writer never overwrites the first."""

from __future__ import annotations

import nats
import pytest

from poller.pipeline.state import EntityState, Health, SourceState
from poller.pipeline.store import StateFenced, StateStore
from poller.tools.natsserver import NatsServer

KEY = "tencent-ccc.tc-main.1400000001"


def _state(n: int, raw: str, stream_seq: int = 0) -> SourceState:
    entities = {f"t{i}": EntityState(kind="task", state="running", raw=raw, seq=1) for i in range(n)}
    return SourceState(entities=entities, cursors={"c": n}, health=Health(), stream_seq=stream_seq)


async def _bucket(server: NatsServer) -> tuple[nats.NATS, object]:
    nc = await nats.connect(server.url)
    kv = await nc.jetstream().create_key_value(bucket="AICC_STATE_TEST", history=1)
    return nc, kv


async def test_a_state_round_trips_and_incremental_commits_keep_it(nats_server: NatsServer) -> None:
    nc, kv = await _bucket(nats_server)
    try:
        store = StateStore(kv)
        await store.load(KEY)
        await store.commit(KEY, _state(500, "1", stream_seq=7), None)
        changed = _state(500, "1", stream_seq=9)
        changed.entities["t3"] = EntityState(kind="task", state="finished", raw="2", seq=2)
        await store.commit(KEY, changed, {"t3"})
        loaded = await StateStore(kv).load(KEY)
        assert loaded.entities == changed.entities
        assert (loaded.cursors, loaded.stream_seq) == ({"c": 500}, 9)
    finally:
        await nc.close()


async def test_a_second_writer_is_fenced_and_never_overwrites_the_winner(nats_server: NatsServer) -> None:
    nc, kv = await _bucket(nats_server)
    try:
        first, second = StateStore(kv), StateStore(kv)
        await first.commit(KEY, _state(300, "0"), None)
        # both load the same committed state, as two replicas during a hand-over would
        await first.load(KEY)
        await second.load(KEY)
        winner = _state(300, "1", stream_seq=5)
        await first.commit(KEY, winner, None)
        await first.commit(KEY, _state(300, "2", stream_seq=6), {f"t{i}" for i in range(300)})
        with pytest.raises(StateFenced):
            await second.commit(KEY, _state(300, "9", stream_seq=99), {"t1"})
        with pytest.raises(StateFenced):  # incremental or full, the loser stays out
            await second.commit(KEY, _state(10, "9", stream_seq=99), None)
        loaded = await StateStore(kv).load(KEY)
        assert loaded.stream_seq == 6
        assert {e.raw for e in loaded.entities.values()} == {"2"} and len(loaded.entities) == 300
    finally:
        await nc.close()


async def test_a_writer_that_never_loaded_cannot_create_over_an_existing_state(
    nats_server: NatsServer,
) -> None:
    nc, kv = await _bucket(nats_server)
    try:
        await StateStore(kv).commit(KEY, _state(5, "1", stream_seq=3), None)
        with pytest.raises(StateFenced):
            await StateStore(kv).commit(KEY, _state(5, "7"), None)
        assert (await StateStore(kv).load(KEY)).stream_seq == 3
    finally:
        await nc.close()
