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
A failure no retry can fix (an event larger than NATS or the stream accepts, no permission on its
subject; see :mod:`poller.pipeline.nats_faults`) raises :class:`~poller.errors.PublishRejected`
instead of being retried forever.

Each event goes out as a core publish whose reply subject is a token under one wildcard inbox the
publisher subscribes to once; JetStream answers there and the token says which event the ack is
for. The publish command is written by :mod:`poller.pipeline.nats_wire` (the header block built
without ``Client.publish``'s per-call dict parsing), or by ``Client.publish`` where that cannot.
``js.publish_async`` would do the same but keeps a future and a pending-ack entry per message,
which is most of its cost here (docs/performance.md, Publish path); it also loses error acks (its
callback raises instead of failing the future), so a stream's refusal only surfaced as a timeout.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from poller.errors import PublishRejected
from poller.pipeline.nats_faults import PermanentFault, permanent_fault
from poller.pipeline.nats_wire import header_value_ok, wire_sender
from poller.pipeline.subjects import SOURCE_HEADER, subject_for
from schemas.events import CallFinished, EventBase, event_type

__all__ = ["PublishProgress", "PublishStats", "Publisher"]

log = logging.getLogger("poller.publisher")

#: seconds between probes while publishes fail (jittered): one event each, so it costs little
_PROBE_EVERY = 1.0
#: the ordering key of events that belong to the source itself (health episodes)
_SOURCE_KEY = ""
#: the status header a no-responders answer carries (no stream covers the subject)
_NO_RESPONDERS = "503"
#: distinct subjects remembered before the memo starts over
_SUBJECTS_KEPT = 4096


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


class _AckError(msgspec.Struct):
    code: int = 0
    err_code: int | None = None
    description: str | None = None


class _Ack(msgspec.Struct):
    """JetStream's answer to one publish: where it was stored, or why not."""

    stream: str = ""
    seq: int = 0
    #: set only when the id was already in the duplicate window (absent on a fresh store)
    duplicate: bool | None = None
    error: _AckError | None = None


def _ack_error(error: _AckError) -> Exception:
    """The exception nats-py raises for the same answer, so the fault classification applies as is."""
    try:
        # nats-py raises the subclass for the code (BadRequestError, ServiceUnavailableError, ...)
        nats.js.errors.APIError.from_error(
            {"code": error.code, "err_code": error.err_code, "description": error.description}
        )
    except nats.js.errors.APIError as exc:
        return exc
    return nats.js.errors.APIError(code=error.code, err_code=error.err_code, description=error.description)


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


class _Answers:
    """What came back for one round's sent events; wakes the round once every one is answered."""

    __slots__ = ("acks", "all_in", "answered", "errors", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.answered = 0
        self.acks: list[tuple[int, _Ack]] = []
        self.errors: list[tuple[int, Exception]] = []
        self.all_in: anyio.Event | None = None


class Publisher:
    def __init__(
        self,
        nc: Client,
        *,
        subject_prefix: str = "aicc",
        ack_timeout: float = 5.0,
        window: int = 10000,
        yield_every: int = 256,
        on_published: Callable[[EventBase, float], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        scrub: Callable[[EventBase], EventBase] | None = None,
    ) -> None:
        """``nc`` is the connected ``nats.aio.client.Client``; ``window`` bounds a round's events in
        flight, ``yield_every`` how many are buffered before the socket gets them (so the server
        works while later ones are encoded)."""
        self._nc = nc
        self.prefix = subject_prefix
        self.ack_timeout = ack_timeout
        self.window = window
        self.yield_every = max(1, yield_every)
        self.stats = PublishStats()
        self._encode = msgspec.json.Encoder().encode
        self._decode_ack = msgspec.json.Decoder(_Ack).decode
        self._on_published = on_published
        self._on_failure = on_failure
        #: the last step before the wire: free text redacted (:meth:`poller.pipeline.redact.Redactor.event`)
        self._scrub = scrub
        #: the subscription every ack comes to, made on first use (and again if it is gone)
        self._replies: Any = None
        self._reply_prefix = ""
        self._subscribing = anyio.Lock()
        #: reply subject -> the round waiting for it and the event's index; a reply not in it is
        #: late (its round gave up) and ignored, as its event is retried with the same id
        self._pending: dict[str, tuple[_Answers, int]] = {}
        self._tokens = 0
        #: writes the publish command itself (``None``: this nats-py lacks the calls, use ``publish``)
        self._wire = wire_sender(nc) if header_value_ok(subject_prefix) else None
        #: (event class, vendor, account) -> subject
        self._subjects: dict[tuple[type[EventBase], str, str], str] = {}

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
            # after a failure one event probes until an ack comes back (a stream electing a leader
            # answers at once, and a long backoff would outlast it); then whole rounds resume
            batch = self._next_round(events, acked_seq, start, 1 if attempt else self.window)
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
            delay = min(_PROBE_EVERY, 0.2 * 2 ** min(attempt, 6)) * (0.5 + random.random())
            if attempt & (attempt - 1) == 0:  # the 1st, 2nd, 4th, 8th… try: a long outage logs sparsely
                log.warning(
                    "publish not acked, retrying in order with the same ids",
                    extra={"failed": failed, "attempt": attempt, "retry_in": round(delay, 2)},
                )
            await anyio.sleep(delay)
        return highest

    def _next_round(
        self, events: Sequence[EventBase], acked_seq: list[int], start: int, window: int
    ) -> list[int]:
        """Up to ``window`` pending events, in order, none waiting for another pending one."""
        batch = _Round()
        for index in range(start, len(events)):
            if acked_seq[index]:
                continue
            if not batch.depends(events[index]):
                batch.indexes.append(index)
                if len(batch.indexes) >= window:
                    break
        return batch.indexes

    async def _reply_subjects(self) -> str:
        """The prefix of the reply subjects, subscribed once for all acks of this publisher.

        nats-py subscribes again by itself after a reconnect, so the subscription normally lives as
        long as the connection; it is made anew only if it is gone (unsubscribed, drained, closed).
        """
        if self._replies is not None and self._subscribed(self._replies):
            return self._reply_prefix
        async with self._subscribing:
            if self._replies is None or not self._subscribed(self._replies):
                prefix = f"{self._nc.new_inbox()}."
                # no pending limits: a round's acks are bounded by the window, and a dropped ack
                # would only cost a timeout and a retry
                self._replies = await self._nc.subscribe(
                    f"{prefix}*", cb=self._on_reply, pending_msgs_limit=0, pending_bytes_limit=0
                )
                self._reply_prefix = prefix
        return self._reply_prefix

    def _subscribed(self, sub: Any) -> bool:
        """Is ``sub`` still registered on the connection? nats-py has no public way to ask."""
        subs = getattr(self._nc, "_subs", None)
        return subs is None or subs.get(getattr(sub, "_id", None)) is sub

    async def _on_reply(self, msg: Any) -> None:
        """One ack (or refusal) from JetStream, matched to its event by the reply subject."""
        entry = self._pending.pop(msg.subject, None)
        if entry is None:
            return  # late: its round timed out, the event is retried with the same id
        answers, index = entry
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status:
            if status == _NO_RESPONDERS:
                answers.errors.append((index, nats.js.errors.NoStreamResponseError()))
            else:
                answers.errors.append((index, nats.errors.Error(f"nats: status {status} as the ack")))
        else:
            try:
                ack = self._decode_ack(msg.data)
            except msgspec.DecodeError as exc:
                answers.errors.append((index, nats.errors.Error(f"nats: undecodable ack: {exc}")))
            else:
                if ack.error is not None:
                    answers.errors.append((index, _ack_error(ack.error)))
                elif ack.seq <= 0:
                    answers.errors.append((index, nats.errors.Error("nats: ack without a sequence")))
                else:
                    answers.acks.append((index, ack))
        answers.answered += 1
        if answers.all_in is not None and answers.answered >= answers.sent:
            answers.all_in.set()

    def _subject(self, event: EventBase) -> str:
        """The event's subject, kept per vendor, account and type (a few distinct ones per source)."""
        key = (type(event), event.vendor, event.account)
        subject = self._subjects.get(key)
        if subject is None:
            if len(self._subjects) >= _SUBJECTS_KEPT:
                self._subjects.clear()
            subject = self._subjects[key] = subject_for(self.prefix, event)
        return subject

    async def _publish_round(
        self, events: Sequence[EventBase], batch: list[int], acked_seq: list[int], source_key: str
    ) -> tuple[int, PermanentFault | None]:
        """Send ``batch`` pipelined and await the acks: how many were not acked, and the first
        failure no retry can fix."""
        started = time.monotonic()
        answers = _Answers()
        failed = 0
        rejected: PermanentFault | None = None
        # this round's reply tokens are first+1 .. token: a range, so no list of them is kept
        first = token = self._tokens
        self._tokens += len(batch)
        reply_prefix = ""
        try:
            try:
                reply_prefix = await self._reply_subjects()
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
                return len(batch), permanent_fault(exc)
            publish, pending, encode = self._nc.publish, self._pending, self._encode
            wire = self._wire if header_value_ok(source_key) and header_value_ok(reply_prefix) else None
            send = wire.send if wire is not None else None
            tail = wire.header_tail(SOURCE_HEADER, source_key) if wire is not None else b""
            subjects, subject_of = self._subjects, self._subject
            yield_every = self.yield_every
            sent = 0
            for index in batch:
                event = events[index]
                payload = encode(event)
                subject = subjects.get((type(event), event.vendor, event.account)) or subject_of(event)
                token += 1
                reply = f"{reply_prefix}{token}"
                # registered first: a flush inside publish may let the ack in before it returns
                pending[reply] = (answers, index)
                event_id = event.event_id
                try:
                    if send is not None and header_value_ok(event_id):
                        await send(subject, reply, event_id, tail, payload)
                    else:
                        await publish(
                            subject,
                            payload,
                            reply=reply,
                            headers={"Nats-Msg-Id": event_id, SOURCE_HEADER: source_key},
                        )
                except Exception as exc:
                    # the connection refuses more: the rest of the round waits for the retry
                    pending.pop(reply, None)
                    self._failed(f"{type(exc).__name__}: {exc}")
                    fault = permanent_fault(exc)
                    if fault is not None:
                        what = f"{fault.detail} ({event_type(event)} of {len(payload)} bytes)"
                        rejected = PermanentFault(code=fault.code, detail=what)
                    failed += len(batch) - sent
                    break
                sent += 1
                if sent % yield_every == 0:
                    # the flusher writes what is buffered and the acks so far are taken in
                    await anyio.lowlevel.checkpoint()
            answers.sent = sent
            if answers.answered < sent:
                answers.all_in = anyio.Event()
                with anyio.move_on_after(self.ack_timeout):
                    await answers.all_in.wait()
        finally:
            # every answer popped its own entry; the unanswered ones (timed out, cancelled) go here
            if answers.answered < token - first:
                for unanswered in range(first + 1, token + 1):
                    self._pending.pop(f"{reply_prefix}{unanswered}", None)
        for _, error in answers.errors:
            self._failed(f"{type(error).__name__}: {error}")
            if rejected is None:
                rejected = permanent_fault(error)
        failed += len(answers.errors)
        timed_out = answers.sent - answers.answered
        for _ in range(timed_out):
            self._failed("ack timeout")
        failed += timed_out
        duplicates = 0
        for index, ack in answers.acks:
            acked_seq[index] = ack.seq
            if ack.duplicate:
                duplicates += 1
        self.stats.duplicates += duplicates
        self.stats.published += len(answers.acks) - duplicates
        on_published = self._on_published
        if on_published is not None:
            for index, _ in answers.acks:
                on_published(events[index], time.monotonic() - started)
        return failed, rejected

    def _failed(self, why: str) -> None:
        self.stats.failures += 1
        if self._on_failure is not None:
            self._on_failure(why)
