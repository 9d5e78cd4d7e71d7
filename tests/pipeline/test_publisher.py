"""The publisher against a real nats-server: acked, never ahead of an entity's earlier event, and
able to say which prefix was acked when it is cut short."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from poller.errors import PublishRejected
from poller.pipeline import publisher as publisher_module
from poller.pipeline.nats_wire import reply_tap
from poller.pipeline.publisher import Publisher, PublishProgress
from poller.pipeline.subjects import SOURCE_HEADER
from poller.tools.natsserver import NatsServer
from schemas import EntityKind, Event, EventBase
from tests.helpers import wait_until
from tests.pipeline.builders import TOO_BIG, appeared, call, status

STREAM = "PUBTEST"


class Stream(msgspec.Struct, frozen=True):
    """A test stream and the connection its publishers use."""

    nc: Any
    js: Any


@asynccontextmanager
async def jetstream(
    server: NatsServer, subjects: Sequence[str] = ("t.>",), **limits: Any
) -> AsyncIterator[Stream]:
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
    try:
        js = nc.jetstream(timeout=2)
        config = StreamConfig(name=STREAM, subjects=list(subjects), duplicate_window=60, **limits)
        await js.add_stream(config)
        yield Stream(nc, js)
    finally:
        await nc.close()


async def stored_ids(js: Any) -> list[str]:
    """The event ids in the stream, in stream order."""
    info = await js.stream_info(STREAM)
    ids: list[str] = []
    if not info.state.messages:
        return ids
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(STREAM, seq)
        ids.append(msgspec.json.decode(msg.data, type=Event).event_id)
    return ids


@pytest.fixture(params=["tapped", "callback"])
def ack_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with acks taken from the client's parser, and again through the subscription's
    callback, as on a nats-py the tap does not fit."""
    if request.param == "callback":
        monkeypatch.setattr(publisher_module, "reply_tap", lambda nc: None)
    return str(request.param)


def publisher(stream: Stream, **options: Any) -> Publisher:
    return Publisher(stream.nc, subject_prefix="t", ack_timeout=0.3, **options)


def elsewhere(event: EventBase) -> EventBase:
    """``event`` on a subject the test stream does not cover until it is widened to ``t.>``."""
    return msgspec.structs.replace(event, account="b")


async def publish_until_covered(
    stream: Stream, events: Sequence[EventBase], accepted: Sequence[str]
) -> list[str]:
    """Publish while the stream covers only account ``a``'s subjects (the others get no responders,
    which is retried); once the ``accepted`` ones are stored and a retry had time to run, look at the
    stream; widen it to ``t.>``; let the publish finish. Returns the ids stored while not covered."""
    pub = publisher(stream)
    js = stream.js
    async with anyio.create_task_group() as tg:
        tg.start_soon(pub.publish, events, "src")

        async def accepted_stored() -> bool:
            return set(accepted) <= set(await stored_ids(js))

        await wait_until(accepted_stored)
        retries = pub.stats.retries
        await wait_until(lambda: pub.stats.retries > retries)  # one more round after them
        while_rejected = await stored_ids(js)
        await js.update_stream(StreamConfig(name=STREAM, subjects=["t.>"], duplicate_window=60))

        async def all_stored() -> bool:
            return len(await stored_ids(js)) == len(events)

        await wait_until(all_stored)
    return while_rejected


def assert_entity_order(stored: Sequence[str], *chains: Sequence[str]) -> None:
    position = {event_id: i for i, event_id in enumerate(stored)}
    for chain in chains:
        assert [position[event_id] for event_id in chain] == sorted(position[event_id] for event_id in chain)


@pytest.mark.usefixtures("ack_path")
async def test_a_stream_refusing_an_event_rejects_the_publish_and_holds_back_its_entity(
    nats_server: NatsServer,
) -> None:
    events = [appeared("A", name=TOO_BIG), status("A", 2), appeared("B"), status("B", 2)]
    async with jetstream(nats_server, max_msg_size=1000) as stream:
        progress = PublishProgress()
        with pytest.raises(PublishRejected) as rejected:
            await publisher(stream).publish(events, "src", progress)
        while_rejected = await stored_ids(stream.js)
        config = StreamConfig(name=STREAM, subjects=["t.>"], duplicate_window=60, max_msg_size=-1)
        await stream.js.update_stream(config)
        again = publisher(stream)
        await again.publish(events, "src")  # the next cycle derives the same events again
        final = await stored_ids(stream.js)
    # the stream's own limit is answered in the ack: permanent, as the server's max_payload is
    assert rejected.value.code == "payload_too_large"
    assert "message size exceeds maximum" in rejected.value.detail
    assert progress.acked == 0
    # A's status would be in the stream before its appearance: replay would start A from it
    assert while_rejected == ["appeared-B"]
    assert sorted(final) == sorted(e.event_id for e in events)
    assert_entity_order(final, ["appeared-A", "status-A-2"], ["appeared-B", "status-B-2"])
    assert (again.stats.published, again.stats.duplicates) == (3, 1)


@pytest.mark.usefixtures("ack_path")
async def test_an_event_not_stored_holds_back_the_later_events_of_its_entity(nats_server: NatsServer) -> None:
    events = [appeared("A"), elsewhere(status("A", 2)), status("A", 3), appeared("B"), status("B", 2)]
    async with jetstream(nats_server, subjects=["t.v.a.>"]) as stream:
        while_rejected = await publish_until_covered(stream, events, ["appeared-B", "status-B-2"])
        final = await stored_ids(stream.js)
    assert while_rejected == ["appeared-A", "appeared-B", "status-B-2"]
    assert final == ["appeared-A", "appeared-B", "status-B-2", "status-A-2", "status-A-3"]


async def test_a_call_not_stored_holds_back_the_status_that_ends_its_task_or_job(
    nats_server: NatsServer,
) -> None:
    events = [
        # a task's calls (BYRobot), then its terminal status
        elsewhere(call("c1", "T")),
        call("c2", "T"),
        status("T", 2),
        # a single-callee job's call (OutboundBot: the call id is the job id), then the job's status
        elsewhere(call("J", "group")),
        status("J", 2, kind=EntityKind.JOB),
        status("other", 2),
    ]
    async with jetstream(nats_server, subjects=["t.v.a.>"]) as stream:
        while_rejected = await publish_until_covered(stream, events, ["call-c2", "status-other-2"])
        final = await stored_ids(stream.js)
    assert while_rejected == ["call-c2", "status-other-2"]
    assert final.index("call-c1") < final.index("status-T-2")
    assert final.index("call-J") < final.index("status-J-2")
    assert sorted(final) == sorted(e.event_id for e in events)


async def test_many_entities_keep_their_order_while_some_events_are_not_stored(
    nats_server: NatsServer,
) -> None:
    # every third entity's second event is not stored until the stream covers it; small rounds
    events: list[EventBase] = []
    for seq in (1, 2, 3):
        for i in range(60):
            if seq == 1:
                events.append(appeared(f"e{i}"))
            else:
                event = status(f"e{i}", seq)
                events.append(elsewhere(event) if seq == 2 and i % 3 == 0 else event)
    async with jetstream(nats_server, subjects=["t.v.a.>"]) as stream:
        pub = publisher(stream, window=30)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pub.publish, events, "src")
            await wait_until(lambda: pub.stats.retries > 0)
            await anyio.sleep(0.5)
            while_rejected = await stored_ids(stream.js)
            await stream.js.update_stream(StreamConfig(name=STREAM, subjects=["t.>"], duplicate_window=60))
        final = await stored_ids(stream.js)
    held = {f"status-e{i}-{seq}" for i in range(0, 60, 3) for seq in (2, 3)}
    assert not held & set(while_rejected)
    assert sorted(final) == sorted(e.event_id for e in events)
    assert_entity_order(final, *([f"appeared-e{i}", f"status-e{i}-2", f"status-e{i}-3"] for i in range(60)))


async def test_a_publish_cut_short_reports_the_acked_prefix(nats_server: NatsServer) -> None:
    # A2 waits for A1 and B2 for B1; C1 goes with the first round; the stream then holds 3 and is full
    events = [appeared("A"), appeared("B"), status("A", 2), status("B", 2), appeared("C")]
    async with jetstream(nats_server, max_msgs=3, discard=DiscardPolicy.NEW) as stream:
        progress = PublishProgress()
        with anyio.move_on_after(1.0) as scope:
            await publisher(stream).publish(events, "src", progress)
        assert scope.cancelled_caught
        assert await stored_ids(stream.js) == ["appeared-A", "appeared-B", "appeared-C"]
    assert progress.acked == 2  # C is stored, but the prefix ends at A's status
    assert progress.stream_seq == 2


async def test_a_publish_complete_reports_every_event_and_the_highest_sequence(
    nats_server: NatsServer,
) -> None:
    events = [appeared(f"e{i}") for i in range(50)] + [status(f"e{i}", 2) for i in range(50)]
    async with jetstream(nats_server) as stream:
        progress = PublishProgress()
        first, second = publisher(stream), publisher(stream)
        highest = await first.publish(events, "src", progress)
        again = await second.publish(events, "src")  # the same ids: all duplicates
        msg = await stream.js.get_msg(STREAM, 1)
        assert await stored_ids(stream.js) == [e.event_id for e in events]
    assert (progress.acked, progress.stream_seq, highest, again) == (100, 100, 100, 100)
    assert (first.stats.published, first.stats.duplicates) == (100, 0)
    assert (second.stats.published, second.stats.duplicates) == (0, 100)
    assert msg.headers[SOURCE_HEADER] == "src"


async def test_a_publish_across_a_server_crash_stores_everything_once_in_entity_order(tmp_path: Any) -> None:
    server = NatsServer(store_dir=str(tmp_path / "js")).start()
    try:
        events: list[EventBase] = []
        for seq in (1, 2, 3):
            events += [appeared(f"e{i}") if seq == 1 else status(f"e{i}", seq) for i in range(300)]
        async with jetstream(server) as stream:
            pub = publisher(stream)
            async with anyio.create_task_group() as tg:
                assert server.process is not None
                os.kill(server.process.pid, signal.SIGSTOP)  # nothing is acked; then the crash
                tg.start_soon(pub.publish, events, "src")
                await anyio.sleep(0.5)
                server.kill()
                server.start()
            final = await stored_ids(stream.js)
    finally:
        server.close()
    assert sorted(final) == sorted(e.event_id for e in events)  # nothing lost, nothing doubled
    position = {event_id: i for i, event_id in enumerate(final)}
    for i in range(300):
        assert position[f"appeared-e{i}"] < position[f"status-e{i}-2"] < position[f"status-e{i}-3"]


@pytest.mark.usefixtures("ack_path")
async def test_the_same_id_twice_is_stored_once_and_counted_as_a_duplicate(nats_server: NatsServer) -> None:
    events = [appeared("A"), status("A", 2), appeared("A")]  # the third is the first again
    async with jetstream(nats_server) as stream:
        pub = publisher(stream)
        highest = await pub.publish(events, "src")
        final = await stored_ids(stream.js)
    assert final == ["appeared-A", "status-A-2"]
    assert (pub.stats.published, pub.stats.duplicates, highest) == (2, 1, 2)


@pytest.mark.usefixtures("ack_path")
async def test_acks_arriving_after_their_timeout_are_ignored_and_the_retry_dedupes(
    nats_server: NatsServer,
) -> None:
    events = [appeared(f"e{i}") for i in range(200)] + [status(f"e{i}", 2) for i in range(200)]
    async with jetstream(nats_server) as stream:
        pub = publisher(stream)
        assert nats_server.process is not None
        async with anyio.create_task_group() as tg:
            os.kill(nats_server.process.pid, signal.SIGSTOP)  # the first round is sent, never acked
            try:
                tg.start_soon(pub.publish, events, "src")
                await wait_until(lambda: pub.stats.failures >= 200)  # it timed out
            finally:
                os.kill(nats_server.process.pid, signal.SIGCONT)  # its acks come now, too late
        final = await stored_ids(stream.js)
    assert final[:200] == [f"appeared-e{i}" for i in range(200)]
    assert sorted(final) == sorted(e.event_id for e in events)
    # the late fresh acks were dropped: the first round's events were counted by their retry
    assert pub.stats.duplicates >= 200
    assert pub.stats.published + pub.stats.duplicates == len(events)
    assert not pub._open


@pytest.mark.usefixtures("ack_path")
async def test_concurrent_publishes_share_one_reply_subscription(nats_server: NatsServer) -> None:
    batches = [
        [appeared(f"{n}-{i}") for i in range(300)] + [status(f"{n}-{i}", 2) for i in range(300)]
        for n in "abc"
    ]
    async with jetstream(nats_server) as stream:
        pub = publisher(stream, window=100)
        before = len(stream.nc._subs)  # the connection's own request inbox
        async with anyio.create_task_group() as tg:
            for batch in batches:
                tg.start_soon(pub.publish, batch, "src")
        subscriptions = len(stream.nc._subs) - before
        final = await stored_ids(stream.js)
    assert pub.stats.published == len(final) == 1800
    assert subscriptions == 1
    for n in "abc":
        assert_entity_order(final, *([f"appeared-{n}-{i}", f"status-{n}-{i}-2"] for i in range(300)))


@pytest.mark.usefixtures("ack_path")
async def test_a_reply_subscription_that_is_gone_is_made_again(nats_server: NatsServer) -> None:
    async with jetstream(nats_server) as stream:
        pub = publisher(stream)
        await pub.publish([appeared("A")], "src")
        await pub._replies.unsubscribe()  # e.g. drained by someone else
        await pub.publish([status("A", 2)], "src")
        final = await stored_ids(stream.js)
    assert final == ["appeared-A", "status-A-2"]
    assert pub.stats.failures == 0


async def test_acks_come_from_the_clients_parser_where_the_client_allows_it(nats_server: NatsServer) -> None:
    async with jetstream(nats_server) as stream:
        pub = publisher(stream)
        await pub.publish([appeared("A")], "src")
        tap = reply_tap(stream.nc)
        assert tap is not None
        assert tap.routes() == {pub._replies._id}
        await pub._replies.unsubscribe()
        await pub.publish([status("A", 2)], "src")
        assert tap.routes() == {pub._replies._id}  # the new subscription, and the old one let go
        assert tap.failures == 0
        assert await stored_ids(stream.js) == ["appeared-A", "status-A-2"]
