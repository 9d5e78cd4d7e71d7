"""The wire sender against a real nats-server: what it sends is what ``publish`` sends, and the
installed nats-py still has the calls it writes through (this fails loudly on a client upgrade)."""

from __future__ import annotations

from typing import Any

import anyio
import nats
import pytest

from poller.pipeline.nats_wire import header_value_ok, wire_sender
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
