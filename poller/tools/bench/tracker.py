"""Changes made in the simulator matched to the events a NATS subscriber receives."""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
import msgspec
import nats

from schemas import Event, JobStatusChanged, TaskAppeared, TaskStatusChanged

__all__ = [
    "ChangeTracker",
    "EventRouter",
    "ParsedEvent",
    "parse_our_event",
    "parse_plain_event",
    "subscribed",
]

# -- detection latency ----------------------------------------------------------------------------
ParsedEvent = tuple[str, str, str]
"""(what, entity id, raw value): what is "appeared", "changed" or "other"."""

_decode_event = msgspec.json.Decoder(Event).decode


def parse_our_event(data: bytes) -> ParsedEvent:
    event = _decode_event(data)
    if isinstance(event, TaskAppeared):
        return "appeared", event.entity_id, event.current.raw
    if isinstance(event, TaskStatusChanged | JobStatusChanged):
        return "changed", event.entity_id, event.current.raw
    return "other", "", ""


def parse_plain_event(data: bytes) -> ParsedEvent:
    event = json.loads(data)
    what = {"task-appeared": "appeared", "task-status-changed": "changed"}.get(event["type"], "other")
    return what, str(event["entity_id"]), str(event["current"])


class ChangeTracker:
    """Changes made in the simulator (with their time) matched to the events a subscriber receives.

    ``made`` runs on the bench's event loop, ``seen`` on the subscriber's thread: a lock keeps the
    two apart.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: dict[str, tuple[float, str]] = {}
        #: change events that arrived before the simulator's answer to "change" did (a close race)
        self.early: dict[str, tuple[str, float]] = {}
        self.samples: list[float] = []
        self.appeared = 0
        self.changes = 0
        self.closed = False

    def made(self, entity_id: str, raw: str, at: float) -> None:
        with self._lock:
            self.changes += 1
            early = self.early.pop(entity_id, None)
            if early is not None and early[0] == raw:
                self.samples.append(early[1] - at)
            else:
                self.pending[entity_id] = (at, raw)

    def busy(self, entity_id: str) -> bool:
        with self._lock:
            return entity_id in self.pending

    def close(self) -> None:
        """The drain is over: what is pending now stays missed, whatever arrives later."""
        with self._lock:
            self.closed = True

    def seen(self, what: str, entity_id: str, raw: str, received: float) -> None:
        with self._lock:
            if what == "appeared":
                self.appeared += 1
            elif what == "changed" and not self.closed:
                change = self.pending.get(entity_id)
                if change is not None and change[1] == raw:
                    del self.pending[entity_id]
                    self.samples.append(received - change[0])
                else:
                    self.early[entity_id] = (raw, received)


class EventRouter:
    """One subscriber's events, parsed once, each change to the tracker that follows its entity.

    ``routes`` names entities timed apart (a restart is not a live change); every other change, and
    every appearance, goes to ``default``. The ids are known before the run, so a change event that
    beats the simulator's answer still lands on its own tracker.
    """

    def __init__(
        self,
        parse: Callable[[bytes], ParsedEvent],
        default: ChangeTracker,
        routes: Mapping[str, ChangeTracker] | None = None,
    ) -> None:
        self.parse = parse
        self.default = default
        self.routes: Mapping[str, ChangeTracker] = routes or {}

    def tracker(self, what: str, entity_id: str) -> ChangeTracker:
        return self.routes.get(entity_id, self.default) if what == "changed" else self.default

    async def on_message(self, msg: Any) -> None:
        received = time.monotonic()
        what, entity_id, raw = self.parse(msg.data)
        self.tracker(what, entity_id).seen(what, entity_id, raw, received)


@contextlib.contextmanager
def subscribed(url: str, subject: str, router: EventRouter) -> Iterator[None]:
    """A core-NATS subscriber in this process but on a thread and event loop of its own.

    A real subscriber does not share the poller's event loop: when the poller's loop is busy (a
    large first sweep), events still arrive and are timed on arrival, and the server does not cut
    the subscriber off as a slow consumer.
    """
    with anyio.from_thread.start_blocking_portal() as portal:
        nc = portal.call(functools.partial(nats.connect, url, max_reconnect_attempts=-1))
        try:
            portal.call(functools.partial(nc.subscribe, subject, cb=router.on_message))
            portal.call(nc.flush)
            yield
        finally:
            portal.call(nc.close)
