"""JetStream publishing: every event acked, duplicates dropped by ``Nats-Msg-Id``.

A publish that timed out may still have been stored (the request sat in the client's buffer during
an outage), so it is always retried with the same id; JetStream's duplicate window turns the
retry into a no-op when the first copy landed. ``publish`` returns only when every event is acked,
which is what lets the caller commit state afterwards. A failure no retry can fix (an event larger
than NATS accepts, no permission on its subject; see :mod:`poller.pipeline.nats_faults`) raises
:class:`~poller.errors.PublishRejected` instead of being retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec

from poller.errors import PublishRejected
from poller.pipeline.nats_faults import PermanentFault, permanent_fault
from poller.pipeline.subjects import SOURCE_HEADER, subject_for
from schemas.events import EventBase, event_type

__all__ = ["PublishStats", "Publisher"]

log = logging.getLogger("poller.publisher")


class PublishStats(msgspec.Struct, kw_only=True):
    published: int = 0
    duplicates: int = 0
    retries: int = 0
    failures: int = 0


class Publisher:
    def __init__(
        self,
        js: Any,
        *,
        subject_prefix: str = "aicc",
        ack_timeout: float = 5.0,
        window: int = 2000,
        on_published: Callable[[EventBase, float], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self._js = js
        self.prefix = subject_prefix
        self.ack_timeout = ack_timeout
        self.window = window
        self.stats = PublishStats()
        self._encode = msgspec.json.Encoder().encode
        self._on_published = on_published
        self._on_failure = on_failure

    async def publish(self, events: Sequence[EventBase], source_key: str = "") -> int:
        """Publish all ``events`` in order; retry failures until every one is acked.

        Returns the highest stream sequence acked, which the state commit records: on restart the
        stream after it is replayed into the loaded state (see poller/replay.py).
        """
        pending = list(events)
        attempt = 0
        highest = 0
        while pending:
            failed: list[EventBase] = []
            for start in range(0, len(pending), self.window):
                window_failed, window_highest, rejected = await self._publish_window(
                    pending[start : start + self.window], source_key
                )
                if rejected is not None:
                    raise PublishRejected(f"{rejected.code}: {rejected.detail}", code=rejected.code)
                failed.extend(window_failed)
                highest = max(highest, window_highest)
            if not failed:
                return highest
            attempt += 1
            self.stats.retries += len(failed)
            delay = min(10.0, 0.2 * 2 ** min(attempt, 6)) * (0.5 + random.random())
            log.warning(
                "publish not acked, retrying with the same ids",
                extra={"failed": len(failed), "attempt": attempt, "retry_in": round(delay, 2)},
            )
            pending = failed
            await anyio.sleep(delay)
        return highest

    async def _publish_window(
        self, batch: Sequence[EventBase], source_key: str
    ) -> tuple[list[EventBase], int, PermanentFault | None]:
        """The events not acked, the highest seq acked, and the first failure no retry can fix."""
        started = time.monotonic()
        highest = 0
        futures: list[tuple[EventBase, asyncio.Future[Any] | None]] = []
        failed: list[EventBase] = []
        rejected: PermanentFault | None = None
        for event in batch:
            payload = self._encode(event)
            try:
                future = await self._js.publish_async(
                    subject_for(self.prefix, event),
                    payload,
                    headers={"Nats-Msg-Id": event.event_id, SOURCE_HEADER: source_key},
                )
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
                fault = permanent_fault(exc)
                if fault is not None and rejected is None:
                    what = f"{fault.detail} ({event_type(event)} of {len(payload)} bytes)"
                    rejected = PermanentFault(code=fault.code, detail=what)
                future = None
            futures.append((event, future))
        live = [f for _, f in futures if f is not None]
        if live:
            _, not_done = await asyncio.wait(live, timeout=self.ack_timeout)
            for future in not_done:
                future.cancel()
        for event, future in futures:
            if future is None or future.cancelled():
                if future is not None:
                    self._failed("ack timeout")
                failed.append(event)
                continue
            error = future.exception()
            if error is not None:
                self._failed(f"{type(error).__name__}: {error}")
                if rejected is None:
                    rejected = permanent_fault(error)
                failed.append(event)
                continue
            ack = future.result()
            highest = max(highest, ack.seq)
            if ack.duplicate:
                self.stats.duplicates += 1
            else:
                self.stats.published += 1
            if self._on_published is not None:
                self._on_published(event, time.monotonic() - started)
        return failed, highest, rejected

    def _failed(self, why: str) -> None:
        self.stats.failures += 1
        if self._on_failure is not None:
            self._on_failure(why)
