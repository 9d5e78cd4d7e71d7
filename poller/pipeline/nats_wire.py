"""A JetStream publish written straight into nats-py's outgoing buffer, header block built by us.

``Client.publish`` builds and checks the header block from a dict on every call, which is most of
a publish's client time (docs/performance.md, Publish path). Our headers are two fixed keys whose
values are checked once here, so :class:`WireSender` writes the ``HPUB`` command itself through the
client's own buffer and flusher, after the same connection checks ``publish`` makes.

That uses nc's private buffer calls: :func:`wire_sender` returns ``None`` (the caller then uses
``publish``) when the installed client lacks them, and tests/pipeline/test_nats_wire.py fails loudly
so the client upgrade is noticed.
"""

from __future__ import annotations

import re
from typing import Any

import nats.errors
from nats.aio.client import Client

__all__ = ["WireSender", "header_value_ok", "wire_sender"]

#: what nats-py refuses in a subject, or rewrites in a header value: such ones go through ``publish``
_UNSAFE = re.compile(r"[ \t\r\n]")
#: the client's members the sender uses (checked on the class, so a rename is caught before use)
_MEMBERS = ("_send_command", "_flush_pending", "_flush_queue", "_pending_data_size", "_max_pending_size")


def header_value_ok(value: str) -> bool:
    """Would nats-py send ``value`` unchanged? (It strips it and turns CR/LF into spaces.)"""
    return not _UNSAFE.search(value) and value == value.strip()


class WireSender:
    """Sends ``HPUB`` commands with a header of a message id and one fixed header."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    @staticmethod
    def header_tail(name: str, value: str) -> bytes:
        """The part of the header block after the id: the fixed header and the blank line."""
        return f"\r\n{name}: {value}\r\n\r\n".encode()

    async def send(self, subject: str, reply: str, msg_id: str, tail: bytes, payload: bytes) -> None:
        """Like ``nc.publish(subject, payload, reply=reply, headers={"Nats-Msg-Id": msg_id, ...})``.

        ``subject``, ``reply`` and ``msg_id`` must pass :func:`header_value_ok`; raises the errors
        ``publish`` raises for a closed, draining or (while reconnecting) full connection and for a
        payload over the server's limit.
        """
        nc: Any = self._nc
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        if nc.is_draining_pubs:
            raise nats.errors.ConnectionDrainingError
        size = len(payload)
        if not nc.is_connected and (
            nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size
        ):
            raise nats.errors.OutboundBufferLimitError
        if size > nc.max_payload:
            raise nats.errors.MaxPayloadError
        header = b"NATS/1.0\r\nNats-Msg-Id: " + msg_id.encode() + tail
        head = len(header)
        command = f"HPUB {subject} {reply} {head} {head + size}\r\n".encode() + header + payload + b"\r\n"
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        await nc._send_command(command)
        flush_queue = nc._flush_queue
        if flush_queue is not None and flush_queue.empty():
            await nc._flush_pending()


def wire_sender(nc: Client) -> WireSender | None:
    """A sender for ``nc``, or ``None`` if this nats-py lacks what it needs."""
    if not all(hasattr(nc, name) for name in _MEMBERS) or not isinstance(getattr(nc, "stats", None), dict):
        return None
    return WireSender(nc)
