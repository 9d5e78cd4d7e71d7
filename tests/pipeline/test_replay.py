"""Replay against a real nats-server: the stream after the committed sequence is applied to the
loaded state, idempotently, and never past an entity's missing change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
from nats.js.api import StreamConfig

from poller.pipeline.redact import Redactor
from poller.pipeline.replay import replay
from poller.pipeline.state import EntityState, SourceState
from poller.pipeline.subjects import SOURCE_HEADER, subject_for
from poller.tools.natsserver import NatsServer
from schemas import EventBase
from tests.pipeline.builders import appeared, call, status

STREAM = "REPLAYTEST"


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["t.>"]))
        yield js
    finally:
        await nc.close()


async def store(js: Any, events: list[tuple[str, EventBase]]) -> None:
    """Put events in the stream as given (source key, event), as a publisher of each source did."""
    for source_key, event in events:
        subject = subject_for("t", event)
        await js.publish(subject, msgspec.json.encode(event), headers={SOURCE_HEADER: source_key})


async def test_replay_applies_this_sources_events_and_stops_at_an_entitys_gap(js: Any) -> None:
    await store(
        js,
        [
            ("src", appeared("A")),
            ("src", status("A", 3)),  # A's change 2 is not in the stream
            ("src", status("A", 4)),
            ("src", appeared("B")),
            ("src", call("c1", "B")),
            ("src", status("B", 2, raw="finished")),
            ("other", appeared("C")),
        ],
    )
    state = SourceState()
    applied = await replay(js, STREAM, "t.>", "src", state, names=Redactor().kept)
    assert applied == 4  # A's appearance, B's three events
    assert state.entities["A"].seq == 1 and state.entities["A"].raw == "running"
    assert state.entities["B"].seq == 2 and state.entities["B"].raw == "finished"
    assert "C" not in state.entities
    assert state.stream_seq == 6  # the position read to, past the skipped events


async def test_replay_from_an_older_position_changes_nothing_it_already_reflects(js: Any) -> None:
    await store(js, [("src", appeared("A")), ("src", status("A", 2))])
    state = SourceState()
    await replay(js, STREAM, "t.>", "src", state, names=Redactor().kept)
    again = SourceState(entities=dict(state.entities), stream_seq=0)
    await replay(js, STREAM, "t.>", "src", again, names=Redactor().kept)
    assert (
        again.entities
        == state.entities
        == {"A": EntityState(kind="task", state="completed", raw="done", seq=2)}
    )
