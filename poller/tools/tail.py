"""``poller tail``: follow events with filters, as readable lines or raw JSON.

Live by default (core subscription: only what is published from now on); ``from_start`` reads the
JetStream stream from its first message, ``since`` from that many seconds ago, with an ordered
consumer (no durable state left behind). Reading the stream ends its backlog with one "caught up"
line on the status stream, then follows live. ``--vendor`` and ``--type`` are checked against the
known names first: a typo would otherwise be a subscription that waits forever for nothing.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import msgspec
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from poller.pipeline.subjects import subject_token
from poller.tools.render import describe
from poller.vendors import VENDORS
from schemas import EVENT_TYPES, CallFinished, Event
from schemas.events import EntityEvent

__all__ = [
    "EVENT_TYPE_NAMES",
    "TailError",
    "TailUsageError",
    "check_choice",
    "event_concerns_task",
    "known_vendors",
    "parse_since",
    "tail",
    "tail_subject",
]

EVENT_TYPE_NAMES: tuple[str, ...] = tuple(str(cls.__struct_config__.tag) for cls in EVENT_TYPES)

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: ten years: further back than any stream keeps, and still a date the clock can subtract
_SINCE_MAX = 3650 * 86400.0


class TailError(Exception):
    """The server cannot be reached or has no such stream: said in one line, no traceback."""


class TailUsageError(TailError):
    """A flag names something that does not exist (exit 2, before anything is connected)."""


def check_choice(flag: str, value: str | None, known: Iterable[str]) -> None:
    """Raise TailUsageError when ``value`` is not one of ``known``, with the nearest names as a hint."""
    names = sorted(known)
    if value is None or value in names:
        return
    close = difflib.get_close_matches(value, names, n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise TailUsageError(f"unknown {flag} {value!r}{hint} (known: {', '.join(names)})")


def known_vendors() -> list[str]:
    return list(VENDORS)


def parse_since(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``1d`` (decimals allowed) -> seconds."""
    match = _SINCE.match(text)
    seconds = 0.0 if match is None else float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= _SINCE_MAX:
        raise TailUsageError(
            f"--since {text!r}: expected a positive duration up to 3650d, such as 90s, 15m, 2h or 1d"
        )
    return seconds


def tail_subject(prefix: str, vendor: str | None, account: str | None, event_type: str | None) -> str:
    parts = [prefix] + [subject_token(p) if p else "*" for p in (vendor, account, event_type)]
    return ".".join(parts)


def event_concerns_task(event: Event, task_id: str) -> bool:
    """The task itself, its jobs (parent), or one of its calls."""
    if isinstance(event, CallFinished):
        return event.task_id == task_id
    if isinstance(event, EntityEvent):
        return task_id in (event.entity_id, event.parent_id)
    return False


async def _connect(server: str, status: TextIO, closing: list[bool]) -> Any:
    """A bounded first attempt (so a wrong URL fails fast), then reconnect forever while following."""

    async def disconnected() -> None:
        if not closing:  # our own close at the end is not a lost connection
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


class _CatchUp:
    """Knows when the stream's backlog has been shown: the message with nothing pending behind it."""

    def __init__(self, status: TextIO) -> None:
        self._status = status
        self.done = False
        self._seen = 0

    async def start(self, sub: Any) -> None:
        """Nothing pending on the server and nothing ever delivered: there was no backlog to show.

        (Once anything was delivered, the last message was sent with nothing pending behind it and
        :meth:`seen` recognises it; it may still be on its way, not yet queued here.)
        """
        info = await sub.consumer_info()
        if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
            self._announce()

    def seen(self, msg: Any) -> None:
        if self.done:
            return
        self._seen += 1
        if msg.metadata.num_pending == 0:
            self._announce()

    def _announce(self) -> None:
        self.done = True
        print(
            f"tail: caught up ({self._seen} event(s) from the stream); following live",
            file=self._status,
            flush=True,
        )


async def tail(
    server: str,
    subject: str,
    *,
    as_json: bool = False,
    from_start: bool = False,
    since: float | None = None,
    task: str | None = None,
    stream: str = "AICC",
    limit: int | None = None,
    out: TextIO = sys.stdout,
    status: TextIO = sys.stderr,
    describe_with: Callable[[Event], str] = describe,
) -> int:
    """Print matching events until ``limit`` (or forever); returns how many were shown.

    ``describe_with`` makes the readable line (the demo has its own, aligned and coloured).
    """
    decoder = msgspec.json.Decoder(Event)
    closing: list[bool] = []
    nc = await _connect(server, status, closing)
    shown = 0
    sub: Any
    catch_up: _CatchUp | None = None
    try:
        if from_start or since is not None:
            js = nc.jetstream()
            if since is not None:
                start = datetime.now(UTC) - timedelta(seconds=since)
                config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
            else:
                config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            try:
                sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
            except NotFoundError:
                raise TailError(f"no stream {stream!r} on {server} (has a poller run there yet?)") from None
            catch_up = _CatchUp(status)
            await catch_up.start(sub)
        else:
            sub = await nc.subscribe(subject)
        async for msg in sub.messages:
            shown += _show(msg, decoder, task, as_json, out, describe_with)
            if catch_up is not None:
                catch_up.seen(msg)
            if limit is not None and shown >= limit:
                break
    finally:
        closing.append(True)
        await nc.close()
    return shown


def _show(
    msg: Any,
    decoder: msgspec.json.Decoder[Event],
    task: str | None,
    as_json: bool,
    out: TextIO,
    describe_with: Callable[[Event], str],
) -> int:
    """Print one message if it passes the --task filter; 1 when printed."""
    try:
        event = decoder.decode(msg.data)
    except msgspec.DecodeError:
        if task is not None:
            return 0
        print(f"(undecodable message on {msg.subject})", file=out, flush=True)
        return 1
    if task is not None and not event_concerns_task(event, task):
        return 0
    text = msg.data.decode(errors="replace") if as_json else describe_with(event)
    print(text, file=out, flush=True)
    return 1
