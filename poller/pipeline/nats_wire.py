"""The two ends of a JetStream publish that go past nats-py's per-message machinery.

Sending: ``Client.publish`` builds and checks the header block from a dict on every call, which is
most of a publish's client time (docs/performance.md, Publish path). Our headers are two fixed keys
whose values are checked once here, so :class:`WireSender` writes the ``HPUB`` command itself
through the client's own buffer and flusher, after the same connection checks ``publish`` makes.

Receiving: every ack would become a ``Msg``, wait in its subscription's queue and run the
callback as a coroutine of its own. :class:`ReplyTap` hands the messages of chosen subscriptions
from the client's parser straight to a plain function instead; every other message takes the
client's own path.

Both use nc's private calls: :func:`wire_sender` and :func:`reply_tap` return ``None`` (the caller
then uses ``publish`` and the subscription's callback) when the installed client lacks them, and
tests/pipeline/test_nats_wire.py fails loudly so the client upgrade is noticed.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client

__all__ = [
    "ReplyHandler",
    "ReplyTap",
    "WireSender",
    "header_status",
    "header_value_ok",
    "reply_tap",
    "wire_sender",
]

log = logging.getLogger("poller.nats_wire")

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


#: a tapped message: its subject, its payload and its raw header block (``None``: no headers)
ReplyHandler = Callable[[bytes, bytes, bytes | None], None]

#: what the client's parser hands each message to, and the arguments it passes
_DISPATCH = "_process_msg"
_DISPATCH_ARGS = ("self", "sid", "subject", "reply", "data", "headers")
#: an inline status line: ``NATS/1.0 503`` (the code is the three characters after the space)
_STATUS_LINE = b"NATS/1.0 "


def header_status(headers: bytes | None) -> str | None:
    """The inline status code of a raw header block (``"503"`` for no responders), as nats-py reads it."""
    if not headers or not headers.startswith(_STATUS_LINE):
        return None
    code = headers[len(_STATUS_LINE) : len(_STATUS_LINE) + 3].strip()
    return code.decode() if code.isdigit() else None


class ReplyTap:
    """Sits in front of a client's message hand-off and routes chosen subscriptions to a function.

    One tap per client (:func:`reply_tap` finds the installed one). A handler runs inside the
    client's read loop, so it must be short and never block; what it raises is logged and dropped,
    never let into the read loop (``failures`` counts them). A subscription that is gone from the
    client is not routed.
    """

    def __init__(self, nc: Client) -> None:
        self._nc: Any = nc
        self._routes: dict[int, ReplyHandler] = {}
        self.failures = 0
        self._original = getattr(nc, _DISPATCH)
        setattr(nc, _DISPATCH, self._dispatch)

    def route(self, sid: int, handler: ReplyHandler) -> None:
        """Hand the messages of subscription ``sid`` to ``handler`` from now on."""
        self._routes[sid] = handler

    def drop(self, sid: int) -> None:
        self._routes.pop(sid, None)

    def routes(self) -> set[int]:
        """The subscriptions routed now."""
        return set(self._routes)

    async def _dispatch(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        nc = self._nc
        handler = self._routes.get(sid)
        if handler is None or sid not in nc._subs:
            await self._original(sid, subject, reply, data, headers)
            return
        stats = nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, data, headers)
        except Exception:
            self.failures += 1
            if self.failures & (self.failures - 1) == 0:  # the 1st, 2nd, 4th… : a bug logs sparsely
                log.exception(
                    "a tapped message's handler failed; the message is dropped",
                    extra={"failures": self.failures},
                )


def reply_tap(nc: Client) -> ReplyTap | None:
    """The tap of ``nc`` (installed on first use), or ``None`` if this nats-py lacks what it needs."""
    installed = getattr(getattr(nc, _DISPATCH, None), "__self__", None)
    if isinstance(installed, ReplyTap):
        return installed
    dispatch = getattr(type(nc), _DISPATCH, None)
    if dispatch is None or not isinstance(getattr(nc, "_subs", None), dict):
        return None
    if not isinstance(getattr(nc, "stats", None), dict) or not inspect.iscoroutinefunction(dispatch):
        return None
    if tuple(inspect.signature(dispatch).parameters) != _DISPATCH_ARGS:
        return None
    return ReplyTap(nc)
