"""``poller status``: the status page's rows in a terminal, read from a running poller's ops port."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TextIO

import aiohttp
import anyio
import msgspec

from poller.ops.statuspage import SourceRow, StatusDocument
from poller.tools.table import Cell, Palette, render_table, wants_colour

__all__ = ["StatusError", "fetch_status", "main_status", "render_status", "status_url"]

_HEALTH_COLOUR = {"ok": "green", "degraded": "red", "pending": "yellow"}


class StatusError(Exception):
    """The poller could not be asked: said in one line, no traceback."""


def status_url(url: str) -> str:
    """Accept the ops port's base URL or the document's own URL."""
    url = url.rstrip("/")
    if url.endswith("/status.json"):
        return url
    if url.endswith("/status"):
        return url + ".json"
    return url + "/status.json"


async def fetch_status(url: str, timeout: float = 5.0) -> tuple[bytes, StatusDocument]:
    target = status_url(url)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(target) as resp,
        ):
            body = await resp.read()
            if resp.status != 200:
                raise StatusError(f"{target} answered HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise StatusError(f"cannot reach {target}: {type(exc).__name__} {exc}".rstrip()) from None
    try:
        return body, msgspec.json.decode(body, type=StatusDocument)
    except msgspec.DecodeError as exc:
        raise StatusError(f"{target} did not answer a poller status document: {exc}") from None


def _ago(iso: str | None, now: datetime) -> str:
    if iso is None:
        return "-"
    seconds = (now - datetime.fromisoformat(iso)).total_seconds()
    return f"{_span(max(0.0, seconds))} ago"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _next(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "now" if seconds < 0.05 else "in " + _span(seconds)  # due already: the cycle is running


def _limits(row: SourceRow) -> str:
    return " ".join(f"{limit.in_window}/{limit.limit}" for limit in row.limits) or "-"


def _source(row: SourceRow) -> str:
    name = f"{row.vendor}/{row.account}"
    return f"{name}/{row.scope}" if row.scope else name


def render_status(doc: StatusDocument, out: TextIO, colour: bool | None = None) -> None:
    paint = Palette(wants_colour(out) if colour is None else colour)
    now = datetime.fromisoformat(doc.generated_at)
    verdict = (
        paint("ready", "green") if doc.ready else paint("NOT READY", "red") + f" ({', '.join(doc.failing)})"
    )
    print(f"aicc-poller {doc.version}: {verdict}", file=out)
    nats = doc.nats
    link = paint("connected", "green") if nats.connected else paint("disconnected", "red")
    stream = nats.stream + ("" if nats.stream_and_bucket else " (not set up)")
    if nats.stream_messages is not None:
        stream += f", {nats.stream_messages} messages, last seq {nats.stream_last_seq}"
    print(f"NATS {nats.url}: {link}; stream {stream}", file=out)
    print(file=out)
    header = [
        "SOURCE",
        "HEALTH",
        "LAST POLL",
        "TOOK",
        "NEXT",
        "REQ/LIMIT",
        "FAILS",
        "DEGRADED",
        "ENTITIES",
        "SEQ",
        "LAG",
        "LAST ERROR",
    ]
    rows: list[list[Cell]] = []
    for row in doc.sources:
        error = (row.last_error or "")[:80]
        rows.append(
            [
                (_source(row), None),
                (row.health, _HEALTH_COLOUR.get(row.health)),
                (_ago(row.last_poll_ended, now), None),
                (_span(row.duration_seconds), None),
                (_next(row.next_poll_in_seconds), None),
                (_limits(row), None),
                (str(row.consecutive_failures), "red" if row.consecutive_failures else None),
                (
                    _ago(row.degraded_since, now) if row.degraded_since else "-",
                    "red" if row.degraded_since else None,
                ),
                (str(row.entities), None),
                (str(row.stream_seq), None),
                (_span(row.commit_lag_seconds), None),
                (error or "-", "red" if error else "dim"),
            ]
        )
    for line in render_table(header, rows, paint, right=frozenset({3, 6, 8, 9, 10})):
        print(line, file=out)
    for row in doc.sources:
        if row.watch_list is not None:
            ids = ", ".join(row.watch_list) or "(none)"
            print(f"{_source(row)} watches: {ids}", file=out)
    if doc.recent_events:
        print(file=out)
        print(paint("recent events", "bold"), file=out)
        events = [
            [
                (datetime.fromisoformat(e.at).astimezone().strftime("%H:%M:%S"), "dim"),
                (f"{e.vendor}/{e.account}", None),
                (
                    e.type,
                    "red"
                    if e.type == "source-degraded"
                    else "green"
                    if e.type == "source-recovered"
                    else "cyan",
                ),
                (e.summary, None),
            ]
            for e in doc.recent_events[:10]
        ]
        for line in render_table(["TIME", "SOURCE", "TYPE", "WHAT"], events, paint)[1:]:
            print(line, file=out)


def main_status(url: str, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Exit 0 when the poller is ready, 1 when it is not or cannot be asked (a probe can use it)."""
    try:
        body, doc = anyio.run(fetch_status, url)
    except StatusError as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    if as_json:
        out.write(body.decode() + "\n")
    else:
        render_status(doc, out)
    return 0 if doc.ready else 1
