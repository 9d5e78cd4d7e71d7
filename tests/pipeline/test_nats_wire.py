"""The wire sender and the reply tap against a real nats-server: what the sender sends is what
``publish`` sends, what the tap hands over is what the subscription would have got, and the
installed nats-py still has the calls both go through (this fails loudly on a client upgrade)."""

from __future__ import annotations

from typing import Any

import anyio
import nats
import pytest

from poller.pipeline.nats_wire import header_status, header_value_ok, reply_tap, wire_sender
from poller.tools.natsserver import NatsServer


async def received(nc: Any, subject: str, count: int) -> tuple[Any, list[Any]]:
    """A subscription on ``subject`` and the list its ``count`` messages land in."""
    got: list[Any] = []
    done = anyio.Event()

    async def cb(msg: Any) -> None:
        got.append(msg)
        if len(got) >= count:
            done.set()

    await nc.subscribe(subject, cb=cb)
    await nc.flush()
    return done, got


async def test_the_installed_nats_client_has_what_the_wire_sender_writes_through(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        # None means the publisher fell back to Client.publish: check nats_wire against the new client
        assert wire_sender(nc) is not None
        # None means acks go through the subscription's callback again: the same
        tap = reply_tap(nc)
        assert tap is not None
        assert reply_tap(nc) is tap  # one per client, found again
    finally:
        await nc.close()


async def test_a_wire_send_arrives_exactly_as_the_same_publish(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        sender = wire_sender(nc)
        assert sender is not None
        done, got = await received(nc, "w.>", 2)
        payload = b'{"k":"v \\r\\n"}'
        tail = sender.header_tail("Aicc-Source", "src-1")
        await sender.send("w.one", "r.1", "id-1", tail, payload)
        await nc.publish(
            "w.one", payload, reply="r.1", headers={"Nats-Msg-Id": "id-1", "Aicc-Source": "src-1"}
        )
        with anyio.fail_after(5):
            await done.wait()
    finally:
        await nc.close()
    wire, public = got
    assert (wire.subject, wire.reply, wire.data, wire.headers) == (
        public.subject,
        public.reply,
        public.data,
        public.headers,
    )
    assert wire.headers == {"Nats-Msg-Id": "id-1", "Aicc-Source": "src-1"}


async def test_a_wire_send_refuses_a_payload_over_the_servers_limit(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        sender = wire_sender(nc)
        assert sender is not None
        with pytest.raises(nats.errors.MaxPayloadError):
            await sender.send("w.big", "r.1", "id", b"\r\n\r\n", b"x" * (nc.max_payload + 1))
    finally:
        await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await sender.send("w.one", "r.1", "id", b"\r\n\r\n", b"{}")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("tencent-ccc:bench:1400000001", True), ("a b", False), ("a\r\nX: y", False), (" a", False), ("", True)],
)
def test_values_nats_py_would_rewrite_are_left_to_publish(value: str, ok: bool) -> None:
    assert header_value_ok(value) is ok


class Tapped:
    """What a tap handed to one handler, and a way to wait for a number of messages."""

    def __init__(self, count: int, fail_first: bool = False) -> None:
        self.got: list[tuple[bytes, bytes, bytes | None]] = []
        self.done = anyio.Event()
        self._count = count
        self._fail_first = fail_first

    def __call__(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        if self._fail_first:
            self._fail_first = False
            raise RuntimeError("a handler bug")
        self.got.append((subject, data, headers))
        if len(self.got) >= self._count:
            self.done.set()


async def test_a_tapped_subscription_gets_what_its_callback_would_and_the_others_keep_theirs(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        tap = reply_tap(nc)
        assert tap is not None
        untapped_done, untapped = await received(nc, "u.>", 2)
        to_callback: list[Any] = []

        async def callback(msg: Any) -> None:
            to_callback.append(msg)

        sub = await nc.subscribe("t.>", cb=callback)
        tapped = Tapped(3)
        tap.route(sub._id, tapped)
        before = nc.stats["in_msgs"]
        await nc.publish("t.one", b"plain")
        await nc.publish("u.one", b"elsewhere")
        await nc.publish("t.two", b"with headers", headers={"A": "b"})
        await nc.publish("u.two", b"elsewhere too")
        # a request nobody serves: the server answers the reply subject with a 503 status
        await nc.publish("nobody.here", b"", reply="t.three", headers={"A": "b"})
        with anyio.fail_after(5):
            await tapped.done.wait()
            await untapped_done.wait()
        assert nc.stats["in_msgs"] - before == 5  # the tapped ones are counted as the client counts
    finally:
        await nc.close()
    assert [(subject, data) for subject, data, _ in tapped.got] == [
        (b"t.one", b"plain"),
        (b"t.two", b"with headers"),
        (b"t.three", b""),
    ]
    assert [header_status(headers) for _, _, headers in tapped.got] == [None, None, "503"]
    assert [msg.data for msg in untapped] == [b"elsewhere", b"elsewhere too"]
    assert to_callback == []


async def test_a_failing_handler_drops_its_message_counts_it_and_the_connection_goes_on(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        tap = reply_tap(nc)
        assert tap is not None
        sub = await nc.subscribe("t.>")
        tapped = Tapped(1, fail_first=True)
        tap.route(sub._id, tapped)
        await nc.publish("t.one", b"lost")
        await nc.publish("t.two", b"kept")
        with anyio.fail_after(5):
            await tapped.done.wait()
        assert nc.is_connected
    finally:
        await nc.close()
    assert tapped.got == [(b"t.two", b"kept", None)]
    assert tap.failures == 1
    assert "handler failed" in caplog.text


async def test_a_dropped_route_goes_back_to_the_subscriptions_callback(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        tap = reply_tap(nc)
        assert tap is not None
        done, got = await received(nc, "t.>", 1)
        (sid,) = (sid for sid, sub in nc._subs.items() if sub.subject == "t.>")
        tapped = Tapped(1)
        tap.route(sid, tapped)
        tap.drop(sid)
        await nc.publish("t.one", b"to the callback")
        with anyio.fail_after(5):
            await done.wait()
    finally:
        await nc.close()
    assert [msg.data for msg in got] == [b"to the callback"]
    assert tapped.got == []


@pytest.mark.parametrize(
    "block",
    [
        None,
        b"",
        b"NATS/1.0 503\r\n\r\n",
        b"NATS/1.0 404 No Messages\r\n\r\n",
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n",
        b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n",
        b"NATS/1.0 abc\r\n\r\n",
    ],
)
async def test_the_status_of_a_header_block_is_read_as_the_client_reads_it(
    nats_server: NatsServer, block: bytes | None
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        parsed = await nc._process_headers(block)
    finally:
        await nc.close()
    assert header_status(block) == (parsed or {}).get("Status")
