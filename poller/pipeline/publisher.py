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
instead of being retried forever. NATS tells a permission violation beside the publish, never as
its ack: :mod:`poller.pipeline.nats_denials` hands it here, and the round's events on that subject
are refused at once.

Each event goes out as a core publish whose reply subject is a token under one wildcard inbox the
publisher subscribes to once; JetStream answers there and the token says which event the ack is
for. The publish command is written by :mod:`poller.pipeline.nats_wire` (the header block built
without ``Client.publish``'s per-call dict parsing), or by ``Client.publish`` where that cannot.
``js.publish_async`` would do the same but keeps a future and a pending-ack entry per message,
which is most of its cost here (docs/performance.md, Publish path); it also loses error acks (its
callback raises instead of failing the future), so a stream's refusal only surfaced as a timeout.
"""

from __future__ import annotations

import bisect
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
from poller.pipeline.nats_denials import Denials, SubjectDenied
from poller.pipeline.nats_faults import PermanentFault, permanent_fault
from poller.pipeline.nats_wire import header_status, header_value_ok, reply_tap, wire_sender
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


class _AckError(msgspec.Struct, gc=False):
    code: int = 0
    err_code: int | None = None
    description: str | None = None


class _Ack(msgspec.Struct, gc=False):
    """JetStream's answer to one publish: where it was stored, or why not.

    ``gc=False`` (it holds no containers): an ack in flight is no work for the cyclic collector.
    """

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
    """What came back for one round's events, whose reply tokens are ``first + 1 … first + len``.

    Kept as flat lists of ints, indexed by the token's place in the round, so an answer in flight
    allocates nothing that outlives it; wakes the round once every sent event is answered.
    """

    __slots__ = (
        "all_in",
        "answered",
        "batch",
        "by_subject",
        "duplicates",
        "errors",
        "events",
        "first",
        "sent",
        "seqs",
    )

    def __init__(self, first: int, size: int, events: Sequence[EventBase], batch: list[int]) -> None:
        self.first = first
        #: the round's events (``events[batch[place]]``), looked at only when NATS refuses a subject
        self.events, self.batch = events, batch
        #: lower-cased subject -> (subject, place), built on the first refusal of the round
        self.by_subject: dict[str, list[tuple[str, int]]] | None = None
        self.sent = 0
        self.answered = 0
        self.duplicates = 0
        #: per event of the round: its stream sequence once acked, 0 unanswered, -1 refused
        self.seqs = [0] * size
        self.errors: list[tuple[int, Exception]] = []
        self.all_in: anyio.Event | None = None

    def ack(self, place: int, ack: _Ack) -> None:
        self.seqs[place] = ack.seq
        if ack.duplicate:
            self.duplicates += 1
        self._answered()

    def refused(self, place: int, error: Exception) -> None:
        self.seqs[place] = -1
        self.errors.append((place, error))
        self._answered()

    def _answered(self) -> None:
        self.answered += 1
        if self.all_in is not None and self.answered >= self.sent:
            self.all_in.set()


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
        denials: Denials | None = None,
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
        #: the rounds waiting for answers, in the order of their tokens, and the first token of
        #: each (so an answer's round is found by bisection); an answer no open round covers is
        #: late (its round gave up) and ignored, as its event is retried with the same id
        self._open: list[_Answers] = []
        self._firsts: list[int] = []
        self._tokens = 0
        #: writes the publish command itself (``None``: this nats-py lacks the calls, use ``publish``)
        self._wire = wire_sender(nc) if header_value_ok(subject_prefix) else None
        #: takes the acks from the client's parser (``None``: the subscription's callback does)
        self._tap = reply_tap(nc)
        #: (event class, vendor, account) -> subject
        self._subjects: dict[tuple[type[EventBase], str, str], str] = {}
        if denials is not None:
            denials.add(self)

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
                replies = await self._nc.subscribe(
                    f"{prefix}*", cb=self._on_reply, pending_msgs_limit=0, pending_bytes_limit=0
                )
                if self._tap is not None:
                    if self._replies is not None:
                        self._tap.drop(self._replies._id)
                    self._tap.route(replies._id, self._on_tapped)
                self._replies, self._reply_prefix = replies, prefix
        return self._reply_prefix

    def _subscribed(self, sub: Any) -> bool:
        """Is ``sub`` still registered on the connection? nats-py has no public way to ask."""
        subs = getattr(self._nc, "_subs", None)
        return subs is None or subs.get(getattr(sub, "_id", None)) is sub

    async def _on_reply(self, msg: Any) -> None:
        """One answer through the subscription's callback (where the client cannot be tapped)."""
        headers = msg.headers
        self._answer(msg.subject, msg.data, headers.get("Status") if headers else None)

    def _on_tapped(self, subject: bytes, data: bytes, headers: bytes | None) -> None:
        """One answer straight from the client's parser."""
        self._answer(subject, data, header_status(headers))

    def _answer(self, subject: str | bytes, data: bytes, status: str | None) -> None:
        """One ack (or refusal) from JetStream, matched to its event by the reply token."""
        try:
            token = int(subject[len(self._reply_prefix) :])
        except ValueError:
            return  # not one of our tokens
        at = bisect.bisect_left(self._firsts, token) - 1
        if at < 0:
            return  # late: its round gave up, the event is retried with the same id
        answers = self._open[at]
        place = token - answers.first - 1
        if place >= len(answers.seqs) or answers.seqs[place]:
            return  # late (beyond every open round), or answered already
        if status:
            if status == _NO_RESPONDERS:
                answers.refused(place, nats.js.errors.NoStreamResponseError())
            else:
                answers.refused(place, nats.errors.Error(f"nats: status {status} as the ack"))
            return
        try:
            ack = self._decode_ack(data)
        except msgspec.DecodeError as exc:
            answers.refused(place, nats.errors.Error(f"nats: undecodable ack: {exc}"))
            return
        if ack.error is not None:
            answers.refused(place, _ack_error(ack.error))
        elif ack.seq <= 0:
            answers.refused(place, nats.errors.Error("nats: ack without a sequence"))
        else:
            answers.ack(place, ack)

    def _places(self, answers: _Answers, lowered: str) -> list[tuple[str, int]]:
        if answers.by_subject is None:
            answers.by_subject = {}
            for place, index in enumerate(answers.batch):
                subject = self._subject(answers.events[index])
                answers.by_subject.setdefault(subject.lower(), []).append((subject, place))
        return answers.by_subject.get(lowered, [])

    def in_flight(self, lowered: str) -> set[str]:
        """The subjects of unanswered events that a permission violation on ``lowered`` may be about."""
        return {s for a in self._open for s, place in self._places(a, lowered) if not a.seqs[place]}

    def refuse(self, subject: str, error: SubjectDenied) -> None:
        """NATS refused ``subject``: every unanswered event on it is refused (its ack never comes)."""
        for answers in self._open:
            for exact, place in self._places(answers, subject.lower()):
                if exact == subject and not answers.seqs[place]:
                    answers.refused(place, error)

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
        failed = 0
        rejected: PermanentFault | None = None
        # this round's reply tokens are first+1 .. first+len(batch): a range, so no list is kept
        first = token = self._tokens
        self._tokens += len(batch)
        answers = _Answers(first, len(batch), events, batch)
        # opened before the first send: a flush inside a send may let an ack in before it returns
        self._open.append(answers)
        self._firsts.append(first)
        try:
            try:
                reply_prefix = await self._reply_subjects()
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
                return len(batch), permanent_fault(exc)
            publish, encode = self._nc.publish, self._encode
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
            # closed: an answer that comes later (timed out, cancelled) finds no round and is dropped
            at = bisect.bisect_left(self._firsts, first)
            del self._open[at], self._firsts[at]
        for _, error in answers.errors:
            self._failed(f"{type(error).__name__}: {error}")
            if rejected is None:
                rejected = permanent_fault(error)
        failed += len(answers.errors)
        timed_out = answers.sent - answers.answered
        for _ in range(timed_out):
            self._failed("ack timeout")
        failed += timed_out
        acked = answers.answered - len(answers.errors)
        self.stats.duplicates += answers.duplicates
        self.stats.published += acked - answers.duplicates
        on_published = self._on_published
        elapsed = time.monotonic() - started
        for place, seq in enumerate(answers.seqs):
            if seq > 0:
                index = batch[place]
                acked_seq[index] = seq
                if on_published is not None:
                    on_published(events[index], elapsed)
        return failed, rejected

    def _failed(self, why: str) -> None:
        self.stats.failures += 1
        if self._on_failure is not None:
            self._on_failure(why)
