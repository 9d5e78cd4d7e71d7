"""The long-running notifier: a durable JetStream pull consumer feeding one worker per rule.

A stream message is acked only once every rule it matched is done with it: its message accepted by
the target, or (after the rule's retries) dead-lettered to a JetStream subject. Until then it is
held, kept alive with progress acks, so a stopped or crashed notifier leaves it to be redelivered
to the next one: nothing is missed, and an acked event is never notified again. Grouping holds the
events of a group until its message is sent; a degraded-for-N rule holds a source-degraded event
until the episode lasted N minutes (counted from the event's own time, so a restart does not reset
it) and drops it quietly when the source-recovered of that episode comes first.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import msgspec
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from poller.pipeline.subjects import SOURCE_HEADER
from poller.runtime.connection import connect
from poller.tools.notify.config import NotifyConfig, Rule, Target
from poller.tools.notify.rules import group_key, matches, render
from poller.tools.notify.targets import DeliveryFailed, Message, deliver
from schemas import Event, SourceDegraded, SourceRecovered, decoder

__all__ = ["DeadLetter", "Notifier", "serve"]

log = logging.getLogger("poller.notify")

FETCH_BATCH = 256
#: beyond the target's own timeout, how long the acks after a delivery may take once a stop was asked
ACK_GRACE = 5.0
TICK = 0.1


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """What kept failing, published on ``<dead_letter_subject>.<rule>`` for a person to look at."""

    rule: str
    target: str
    error: str
    attempts: int
    failed_at: datetime
    text: str = ""
    events: list[Event] = []
    #: a payload that is not an event at all (rule "undecodable"), as received
    raw: str | None = None


class _Held:
    """A stream message that rules still work on; acked when the last of them is done."""

    __slots__ = ("msg", "pending")

    def __init__(self, msg: Any) -> None:
        self.msg = msg
        self.pending = 0


class _Batch:
    __slots__ = ("events", "helds", "opened")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.events: list[Event] = []
        self.helds: list[_Held] = []


class _Waiting(msgspec.Struct, kw_only=True):
    due: float
    held: _Held
    event: Event


class _RuleWorker:
    """One rule: collects matching events into groups and sends each group, paced and retried."""

    def __init__(self, rule: Rule, target: Target, notifier: Notifier) -> None:
        self.rule = rule
        self.target = target
        self.notifier = notifier
        self.batches: dict[tuple[str, ...], _Batch] = {}
        self.waiting: dict[tuple[str, int], _Waiting] = {}
        self.sent: deque[float] = deque()

    def offer(self, held: _Held, subject: str, source: str, event: Event) -> bool:
        if not matches(self.rule, subject, event):
            return False
        if self.rule.degraded_for_minutes and isinstance(event, SourceDegraded):
            due = event.observed_at.timestamp() + self.rule.degraded_for_minutes * 60
            self.waiting[(source, event.episode)] = _Waiting(due=due, held=held, event=event)
        else:
            self._join(held, event)
        return True

    def recovered(self, source: str, episode: int) -> list[_Held]:
        """The degraded events this recovery makes moot (same source, same or older episode)."""
        over = [k for k in self.waiting if k[0] == source and k[1] <= episode]
        return [self.waiting.pop(k).held for k in over]

    def _join(self, held: _Held, event: Event) -> None:
        key = group_key(self.rule, event)
        batch = self.batches.get(key)
        if batch is None:
            batch = self.batches[key] = _Batch(time.monotonic())
        batch.events.append(event)
        batch.helds.append(held)

    def _ready(self) -> tuple[str, ...] | None:
        now = time.monotonic()
        window, most = self.rule.group_window_seconds, self.rule.group_max_events
        return next(
            (k for k, b in self.batches.items() if b.opened + window <= now or len(b.events) >= most), None
        )

    def _rate_wait(self) -> float:
        now = time.monotonic()
        while self.sent and self.sent[0] <= now - 60.0:
            self.sent.popleft()
        if len(self.sent) < self.rule.max_messages_per_minute:
            return 0.0
        return self.sent[0] + 60.0 - now

    async def run(self) -> None:
        while True:
            # judged by stream time: while a backlog is read, its source-recovered may still come
            horizon = self.notifier.horizon
            for episode in [k for k, w in self.waiting.items() if w.due <= horizon]:
                waiting = self.waiting.pop(episode)
                self._join(waiting.held, waiting.event)
            group = self._ready()
            wait = self._rate_wait() if group is not None else TICK
            if group is None or wait > 0:
                # a group waiting for its turn keeps collecting: a storm becomes one message
                await anyio.sleep(min(max(wait, TICK), 1.0))
                continue
            batch = self.batches.pop(group)
            await self._send(batch)

    async def _send(self, batch: _Batch) -> None:
        rule = self.rule
        message = Message(
            rule=rule.name,
            text=render(rule, batch.events),
            count=len(batch.events),
            first_observed_at=batch.events[0].observed_at,
            last_observed_at=batch.events[-1].observed_at,
            events=batch.events,
        )
        error = ""
        for attempt in range(1, rule.max_attempts + 1):
            # the attempt itself is shielded: a stop is taken here, between attempts
            await anyio.lowlevel.checkpoint()
            self.sent.append(time.monotonic())
            error = "no answer in time"
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.target.timeout_seconds + ACK_GRACE):
                try:
                    await deliver(self.notifier.session, self.target, message)
                except DeliveryFailed as exc:
                    error = str(exc)
                else:
                    self.notifier.counts["sent"] += 1
                    log.info("notified", extra={"rule": rule.name, "events": message.count})
                    await self.notifier.release_all(batch.helds)
                    return
            self.notifier.counts["failed_attempts"] += 1
            log.warning(
                "notification not accepted",
                extra={"rule": rule.name, "attempt": attempt, "error": error},
            )
            if attempt < rule.max_attempts:
                await anyio.sleep(min(rule.max_backoff_seconds, rule.backoff_seconds * 2 ** (attempt - 1)))
        dead = DeadLetter(
            rule=rule.name,
            target=rule.target,
            error=error,
            attempts=rule.max_attempts,
            failed_at=datetime.now(UTC),
            text=message.text,
            events=batch.events,
        )
        await self.notifier.dead_letter(rule.name, dead)
        await self.notifier.release_all(batch.helds)


class Notifier:
    """Consume the event stream durably and run every rule over it until cancelled."""

    def __init__(
        self, config: NotifyConfig, session_factory: Callable[[], aiohttp.ClientSession] | None = None
    ) -> None:
        self.config = config
        self._session_factory = session_factory or aiohttp.ClientSession
        self.session: aiohttp.ClientSession
        self.workers = [_RuleWorker(r, config.targets[r.target], self) for r in config.notify]
        #: held messages by stream sequence (a redelivery of one still held replaces its handle)
        self.held: dict[int, _Held] = {}
        self.counts = {"sent": 0, "failed_attempts": 0, "dead_lettered": 0, "undecodable": 0, "ack_failed": 0}
        self.started = anyio.Event()
        self._js: Any = None
        #: how far the stream has been read, in event time: the latest event's time, or now once
        #: a fetch found nothing left to read
        self.horizon = 0.0

    async def run(self) -> None:
        cfg = self.config
        nc = await connect(
            cfg.nats, on_disconnected=_noop, on_reconnected=_noop, extra_options={"name": "aicc-notify"}
        )
        try:
            async with self._session_factory() as session:
                self.session = session
                self._js = js = nc.jetstream()
                await self._ensure_dead_letter_stream(js)
                sub = await self._subscribe(js)
                self.started.set()
                try:
                    async with anyio.create_task_group() as tg:
                        for worker in self.workers:
                            tg.start_soon(worker.run)
                        tg.start_soon(self._keep_alive)
                        await self._consume(sub)
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await self._return_held()
        finally:
            # acks and naks are buffered publishes: flushed before the connection goes (a drain would
            # also wait out the pull subscription's pending fetch)
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await nc.flush(timeout=3)
                await nc.close()

    async def _ensure_dead_letter_stream(self, js: Any) -> None:
        n = self.config.notifier
        stream = StreamConfig(
            name=n.dead_letter_stream,
            subjects=[f"{n.dead_letter_subject}.>"],
            storage=StorageType.FILE,
            max_age=30 * 86400,
            num_replicas=self.config.nats.replicas,
        )
        try:
            await js.add_stream(stream)
        except BadRequestError as exc:
            if getattr(exc, "err_code", None) != 10058:
                raise
            await js.update_stream(stream)

    async def _subscribe(self, js: Any) -> Any:
        cfg, n = self.config.nats, self.config.notifier
        consumer = ConsumerConfig(
            durable_name=n.durable,
            deliver_policy=DeliverPolicy.NEW if n.deliver == "new" else DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=n.ack_wait_seconds,
            max_ack_pending=n.max_ack_pending,
            max_deliver=-1,
        )
        while True:
            try:
                return await js.pull_subscribe(
                    f"{cfg.subject_prefix}.>", durable=n.durable, stream=cfg.stream, config=consumer
                )
            except nats.errors.Error as exc:
                # the poller creates the stream: until it has, wait for it rather than crash-loop
                log.warning("event stream not ready", extra={"error": type(exc).__name__})
                await anyio.sleep(2.0)

    async def _consume(self, sub: Any) -> None:
        while True:
            try:
                msgs = await sub.fetch(batch=FETCH_BATCH, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either, by path
                self.horizon = max(self.horizon, time.time())
                continue
            except nats.errors.Error as exc:
                log.warning("fetch failed, retrying", extra={"error": type(exc).__name__})
                await anyio.sleep(1.0)
                continue
            for msg in msgs:
                await self._dispatch(msg)

    async def _dispatch(self, msg: Any) -> None:
        seq = msg.metadata.sequence.stream
        held = self.held.get(seq)
        if held is not None:
            held.msg = msg  # redelivered while we still work on it: ack the newer handle
            return
        try:
            event: Event = decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            self.counts["undecodable"] += 1
            where = {"subject": msg.subject, "error": str(exc)[:200]}
            log.warning("not an event, dead-lettered", extra=where)
            dead = DeadLetter(
                rule="undecodable",
                target="",
                error=str(exc)[:300],
                attempts=0,
                failed_at=datetime.now(UTC),
                raw=msg.data.decode(errors="replace")[:10_000],
            )
            await self.dead_letter("undecodable", dead)
            await self._ack(msg)
            return
        self.horizon = max(self.horizon, event.observed_at.timestamp())
        source = (msg.headers or {}).get(SOURCE_HEADER) or f"{event.vendor}.{event.account}"
        if isinstance(event, SourceRecovered):
            # the degraded events this recovery makes moot are acked before the recovery itself
            for worker in self.workers:
                await self.release_all(worker.recovered(source, event.episode))
        held = _Held(msg)
        self.held[seq] = held
        held.pending = sum(w.offer(held, msg.subject, source, event) for w in self.workers)
        if held.pending == 0:
            del self.held[seq]
            await self._ack(msg)

    async def release_all(self, helds: list[_Held]) -> None:
        for held in helds:
            held.pending -= 1
            if held.pending == 0:
                self.held.pop(held.msg.metadata.sequence.stream, None)
                await self._ack(held.msg)

    async def _ack(self, msg: Any) -> None:
        """An ack that cannot be sent is not a reason to stop: the message comes back after
        ack_wait and is notified again (counted, logged) rather than the process crash-looping."""
        try:
            await msg.ack()
        except nats.errors.Error as exc:
            self.counts["ack_failed"] += 1
            log.warning("ack failed; the event will be redelivered", extra={"error": type(exc).__name__})

    async def dead_letter(self, name: str, dead: DeadLetter) -> None:
        """Published to JetStream (acked by the server) before the original events are acked."""
        subject = f"{self.config.notifier.dead_letter_subject}.{name}"
        payload = msgspec.json.encode(dead)
        attempt = 0
        while True:
            try:
                await self._js.publish(subject, payload)
                self.counts["dead_lettered"] += 1
                log.error("dead-lettered", extra={"rule": name, "error": dead.error})
                return
            except nats.errors.Error as exc:
                attempt += 1
                log.warning("dead-letter publish failed", extra={"error": type(exc).__name__})
                await anyio.sleep(min(10.0, 0.5 * 2**attempt))

    async def _keep_alive(self) -> None:
        """Progress acks for held messages, so JetStream does not redeliver what we still hold."""
        every = max(0.5, self.config.notifier.ack_wait_seconds / 3)
        while True:
            await anyio.sleep(every)
            for held in list(self.held.values()):
                with contextlib.suppress(nats.errors.Error):
                    await held.msg.in_progress()

    async def _return_held(self) -> None:
        """On stop: what is still held goes back at once (nak), for the next notifier to pick up."""
        for held in list(self.held.values()):
            with contextlib.suppress(nats.errors.Error):
                await held.msg.nak()
        self.held.clear()


async def _noop() -> None:
    return None


async def serve(config: NotifyConfig) -> None:
    """Run until SIGTERM/SIGINT; held messages go back to the stream for the next notifier."""
    notifier = Notifier(config)
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    log.info("stopping", extra=dict(notifier.counts))
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals)
        await notifier.run()
