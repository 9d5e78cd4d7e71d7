"""``poller tail``: follow events with filters, as readable lines or raw JSON.

Live by default (core subscription: only what is published from now on); ``from_start`` reads the
JetStream stream from its first message with an ordered consumer (no durable state left behind).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import msgspec
import nats
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from poller.pipeline.subjects import subject_token
from poller.tools.render import describe
from schemas import Event


class TailError(Exception):
    """The server cannot be reached or has no such stream: said in one line, no traceback."""


def tail_subject(prefix: str, vendor: str | None, account: str | None, event_type: str | None) -> str:
    parts = [prefix] + [subject_token(p) if p else "*" for p in (vendor, account, event_type)]
    return ".".join(parts)


async def _connect(server: str, status: TextIO) -> Any:
    """A bounded first attempt (so a wrong URL fails fast), then reconnect forever while following."""

    async def disconnected() -> None:
        print("tail: disconnected from NATS, reconnecting", file=status, flush=True)

    async def reconnected() -> None:
        print("tail: reconnected", file=status, flush=True)

    async def error(_: Exception) -> None:
        """The client's default prints a traceback per attempt; the disconnect line says enough."""

    try:
        nc = await nats.connect(
            server,
            connect_timeout=3,
            max_reconnect_attempts=2,
            reconnect_time_wait=0.5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            name="aicc-poller-tail",
        )
    except Exception as exc:
        raise TailError(f"cannot connect to {server}: {type(exc).__name__}") from None
    nc.options["max_reconnect_attempts"] = -1
    return nc


async def tail(
    server: str,
    subject: str,
    *,
    as_json: bool = False,
    from_start: bool = False,
    stream: str = "AICC",
    limit: int | None = None,
    out: TextIO = sys.stdout,
    status: TextIO = sys.stderr,
) -> int:
    """Print matching events until ``limit`` (or forever); returns how many were shown."""
    decoder = msgspec.json.Decoder(Event)
    nc = await _connect(server, status)
    shown = 0
    sub: Any
    try:
        if from_start:
            js = nc.jetstream()
            try:
                sub = await js.subscribe(
                    subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
                )
            except NotFoundError:
                raise TailError(f"no stream {stream!r} on {server} (has a poller run there yet?)") from None
        else:
            sub = await nc.subscribe(subject)
        async for msg in sub.messages:
            if as_json:
                print(msg.data.decode(errors="replace"), file=out, flush=True)
            else:
                try:
                    print(describe(decoder.decode(msg.data)), file=out, flush=True)
                except msgspec.DecodeError:
                    print(f"(undecodable message on {msg.subject})", file=out, flush=True)
            shown += 1
            if limit is not None and shown >= limit:
                break
    finally:
        await nc.close()
    return shown
