"""``GET /status`` (a self-refreshing page) and ``GET /status.json`` on the ops port.

Both read the status protocol (:mod:`poller.ops.status`) and nothing else. The JSON document is a
Struct of its own (:class:`StatusDocument`): readings become wall-clock times and ages once, here,
so the page and ``poller status`` show the same figures. The page's assets ship in the package
(``poller/ops/assets``): pods often have no internet, so nothing is loaded from a CDN.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files

import msgspec
from aiohttp import web

from poller.ops.readiness import readiness
from poller.ops.status import LimitView, ServiceView, SourceView, StatusProvider

__all__ = [
    "EventRow",
    "NatsRow",
    "SourceRow",
    "StatusDocument",
    "add_status_routes",
    "status_document",
]

#: asset name -> content type; only these are served (no path from the request reaches the disk)
_ASSETS = {"status.js": "text/javascript", "status.css": "text/css"}


class SourceRow(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    vendor: str
    account: str
    scope: str
    apis: list[str]
    #: "pending" before the first cycle, then "ok" / "degraded" (degraded: the episode is open)
    health: str
    last_outcome: str | None
    last_poll_started: str | None
    last_poll_ended: str | None
    duration_seconds: float | None
    last_error: str | None
    last_error_at: str | None
    next_poll_due: str | None
    next_poll_in_seconds: float | None
    limits: list[LimitView]
    consecutive_failures: int
    degraded_since: str | None
    entities: int
    stream_seq: int
    commit_lag_seconds: float
    watch_list: list[str] | None
    task_states: dict[str, int]


class NatsRow(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    connected: bool
    stream: str
    stream_and_bucket: bool
    stream_messages: int | None
    stream_bytes: int | None
    stream_last_seq: int | None
    stream_checked_seconds_ago: float | None


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    at: str
    vendor: str
    account: str
    type: str
    summary: str


class StatusDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The body of ``/status.json``; times are ISO 8601 UTC, ages and delays in seconds."""

    version: str
    generated_at: str
    ready: bool
    failing: list[str]
    stopping: bool
    nats: NatsRow
    sources: list[SourceRow]
    recent_events: list[EventRow]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def status_document(view: ServiceView) -> StatusDocument:
    now, epoch = view.taken_monotonic, view.taken_epoch

    def wall(reading: float | None) -> str | None:
        return None if reading is None else _iso(epoch - (now - reading))

    def row(source: SourceView) -> SourceRow:
        started, ended = source.last_poll_started, source.last_poll_ended
        health = "pending" if source.last_outcome is None else "degraded" if source.degraded else "ok"
        due = source.next_poll_due
        return SourceRow(
            key=source.key,
            vendor=source.vendor,
            account=source.account,
            scope=source.scope,
            apis=source.apis,
            health=health,
            last_outcome=source.last_outcome,
            last_poll_started=wall(started),
            last_poll_ended=wall(ended),
            duration_seconds=None if started is None or ended is None else round(ended - started, 3),
            last_error=source.last_error,
            last_error_at=wall(source.last_error_at),
            next_poll_due=wall(due),
            next_poll_in_seconds=None if due is None else round(max(0.0, due - now), 3),
            limits=source.limits,
            consecutive_failures=source.consecutive_failures,
            degraded_since=None if source.degraded_since_epoch is None else _iso(source.degraded_since_epoch),
            entities=source.entities,
            stream_seq=source.stream_seq,
            commit_lag_seconds=round(source.commit_lag, 3),
            watch_list=source.watch_list,
            task_states=source.task_states,
        )

    verdict = readiness(view, now=now)
    nats = view.nats
    checked = nats.stream_checked
    return StatusDocument(
        version=view.version,
        generated_at=_iso(epoch),
        ready=verdict.ready,
        failing=verdict.failing,
        stopping=view.stopping,
        nats=NatsRow(
            url=nats.url,
            connected=view.nats_connected,
            stream=nats.stream,
            stream_and_bucket=view.stream_and_bucket,
            stream_messages=nats.stream_messages,
            stream_bytes=nats.stream_bytes,
            stream_last_seq=nats.stream_last_seq,
            stream_checked_seconds_ago=None if checked is None else round(now - checked, 3),
        ),
        sources=[row(source) for source in sorted(view.sources, key=lambda s: s.key)],
        recent_events=[
            EventRow(at=_iso(e.at_epoch), vendor=e.vendor, account=e.account, type=e.type, summary=e.summary)
            for e in view.recent_events
        ],
    )


def _asset(name: str) -> bytes:
    return files("poller.ops").joinpath("assets", name).read_bytes()


def add_status_routes(app: web.Application, provider: StatusProvider) -> None:
    async def page(_: web.Request) -> web.Response:
        return web.Response(body=_asset("status.html"), content_type="text/html", charset="utf-8")

    async def document(_: web.Request) -> web.Response:
        body = msgspec.json.encode(status_document(provider.status_view()))
        response = web.Response(body=body, content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=_ASSETS[name], charset="utf-8")

    async def slash(_: web.Request) -> web.Response:
        raise web.HTTPFound("../status")  # the page's relative links resolve from /status only

    app.router.add_get("/status", page)
    app.router.add_get("/status/", slash)
    app.router.add_get("/status.json", document)
    app.router.add_get("/status/assets/{name}", asset)
