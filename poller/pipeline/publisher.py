"""JetStream publishing: every event acked, duplicates dropped by ``Nats-Msg-Id``, ordered per entity.

A publish that timed out may still have been stored (the request sat in the client's buffer during
an outage), so it is always retried with the same id; JetStream's duplicate window turns the
retry into a no-op when the first copy landed.

Events are pipelined (many in flight, acks awaited together), but an event is only sent once every
earlier event it depends on is acked: a later event of the same entity, and an entity's event after
a ``call-finished`` derived from that entity or its task (the status that says "finished" stops the
record from being read again, so the call must be stored first). So a partial failure never leaves
the stream holding an entity's later event without its earlier one. :class:`PublishProgress` says
how long a prefix of the events is acked, which is what a caller cut short may commit.
A failure no retry can fix (an event larger than NATS accepts, no permission on its subject; see
:mod:`poller.pipeline.nats_faults`) raises :class:`~poller.errors.PublishRejected` instead of being
retried forever.
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
from schemas.events import CallFinished, EventBase, event_type

__all__ = ["PublishProgress", "PublishStats", "Publisher"]

log = logging.getLogger("poller.publisher")

#: the ordering key of events that belong to the source itself (health episodes)
_SOURCE_KEY = ""


class PublishStats(msgspec.Struct, kw_only=True):
    published: int = 0
    duplicates: int = 0
    retries: int = 0
    failures: int = 0


class PublishProgress(msgspec.Struct, kw_only=True):
    """How far one :meth:`Publisher.publish` got, also when it was cancelled part way."""

    #: ``events[:acked]`` are all acked (later ones may be stored too, never ahead of their entity)
    acked: int = 0
    #: the highest stream sequence among the acked prefix
    stream_seq: int = 0


class _Round:
    """The events of one pipelined round: none depends on another pending event."""

    def __init__(self) -> None:
        self.indexes: list[int] = []
        self._entities: set[str] = set()
        self._calls: set[str] = set()

    def depends(self, event: EventBase) -> bool:
        """Does ``event`` have to wait for an earlier pending event? Records it as pending either way."""
        if isinstance(event, CallFinished):
            keys = (event.call_id, event.task_id)
            blocked = any(key in self._entities for key in keys)
            self._calls.update(keys)
            return blocked
        key = getattr(event, "entity_id", _SOURCE_KEY)
        blocked = key in self._entities or key in self._calls
        self._entities.add(key)
        return blocked


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
        scrub: Callable[[EventBase], EventBase] | None = None,
    ) -> None:
        self._js = js
        self.prefix = subject_prefix
        self.ack_timeout = ack_timeout
        self.window = window
        self.stats = PublishStats()
        self._encode = msgspec.json.Encoder().encode
        self._on_published = on_published
        self._on_failure = on_failure
        #: the last step before the wire: free text redacted (:meth:`poller.pipeline.redact.Redactor.event`)
        self._scrub = scrub

    async def publish(
        self, events: Sequence[EventBase], source_key: str = "", progress: PublishProgress | None = None
    ) -> int:
        """Publish all ``events`` in order per entity; retry failures until every one is acked.

        Returns the highest stream sequence acked, which the state commit records: on restart the
        stream after it is replayed into the loaded state (see :mod:`poller.pipeline.replay`). If the
        caller cancels it, ``progress`` tells which prefix of ``events`` was acked.
        """
        scrub = self._scrub
        if scrub is not None:
            events = [scrub(event) for event in events]
        progress = progress if progress is not None else PublishProgress()
        progress.acked, progress.stream_seq = 0, 0
        acked_seq = [0] * len(events)  # 0: not acked yet
        start = 0  # every event before it is acked
        attempt = 0
        highest = 0
        while start < len(events):
            batch = self._next_round(events, acked_seq, start)
            failed, rejected = await self._publish_round(events, batch, acked_seq, source_key)
            while start < len(events) and acked_seq[start]:
                progress.stream_seq = max(progress.stream_seq, acked_seq[start])
                start += 1
            progress.acked = start
            highest = max(highest, progress.stream_seq)
            if rejected is not None:
                raise PublishRejected(f"{rejected.code}: {rejected.detail}", code=rejected.code)
            if not failed:
                attempt = 0
                continue
            attempt += 1
            self.stats.retries += failed
            delay = min(10.0, 0.2 * 2 ** min(attempt, 6)) * (0.5 + random.random())
            log.warning(
                "publish not acked, retrying in order with the same ids",
                extra={"failed": failed, "attempt": attempt, "retry_in": round(delay, 2)},
            )
            await anyio.sleep(delay)
        return highest

    def _next_round(self, events: Sequence[EventBase], acked_seq: list[int], start: int) -> list[int]:
        """Up to a window of pending events, in order, none waiting for another pending one."""
        batch = _Round()
        for index in range(start, len(events)):
            if acked_seq[index]:
                continue
            if not batch.depends(events[index]):
                batch.indexes.append(index)
                if len(batch.indexes) >= self.window:
                    break
        return batch.indexes

    async def _publish_round(
        self, events: Sequence[EventBase], batch: list[int], acked_seq: list[int], source_key: str
    ) -> tuple[int, PermanentFault | None]:
        """Send ``batch`` pipelined and await the acks: how many were not acked, and the first
        failure no retry can fix."""
        started = time.monotonic()
        futures: list[tuple[int, asyncio.Future[Any]]] = []
        failed = 0
        rejected: PermanentFault | None = None
        try:
            for index in batch:
                event = events[index]
                payload = self._encode(event)
                try:
                    future = await self._js.publish_async(
                        subject_for(self.prefix, event),
                        payload,
                        headers={"Nats-Msg-Id": event.event_id, SOURCE_HEADER: source_key},
                    )
                except Exception as exc:
                    # the connection refuses more: the rest of the round waits for the retry
                    self._failed(f"{type(exc).__name__}: {exc}")
                    fault = permanent_fault(exc)
                    if fault is not None:
                        what = f"{fault.detail} ({event_type(event)} of {len(payload)} bytes)"
                        rejected = PermanentFault(code=fault.code, detail=what)
                    failed += len(batch) - len(futures)
                    break
                futures.append((index, future))
            if futures:
                _, not_done = await asyncio.wait([f for _, f in futures], timeout=self.ack_timeout)
                for future in not_done:
                    future.cancel()
        finally:
            for _, future in futures:
                if not future.done():
                    future.cancel()
        for index, future in futures:
            if future.cancelled():
                self._failed("ack timeout")
                failed += 1
                continue
            error = future.exception()
            if error is not None:
                self._failed(f"{type(error).__name__}: {error}")
                if rejected is None:
                    rejected = permanent_fault(error)
                failed += 1
                continue
            ack = future.result()
            acked_seq[index] = ack.seq
            if ack.duplicate:
                self.stats.duplicates += 1
            else:
                self.stats.published += 1
            if self._on_published is not None:
                self._on_published(events[index], time.monotonic() - started)
        return failed, rejected

    def _failed(self, why: str) -> None:
        self.stats.failures += 1
        if self._on_failure is not None:
            self._on_failure(why)
