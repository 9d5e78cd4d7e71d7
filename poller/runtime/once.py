"""``poller run --once``: one cycle per source, every event on stdout, nothing published or committed.

The first thing to run with new credentials. No NATS is involved at all: each source starts from
an empty state, as a first run does, so what a cycle sees arrives as ``task-appeared`` (and a
failing source as the ``source-degraded`` the service would publish). The verdict per source goes
to stderr; the exit code says whether every source answered.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

import aiohttp
import anyio
import msgspec

from poller.config import Config
from poller.errors import as_source_error
from poller.ops.configview import secret_values
from poller.ops.redaction import status_redactor
from poller.pipeline.differ import SweepDiff
from poller.pipeline.health import health_transition
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import EntitySnapshot
from poller.pipeline.state import SourceState
from poller.transport import LimiterRegistry, limiter_trace
from poller.vendors import VENDORS
from poller.vendors.base import AdapterContext, Source
from schemas.events import EventBase

__all__ = ["CycleResult", "run_once"]

EventSink = Callable[[list[EventBase]], None]


class CycleResult(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    events: int
    seconds: float
    #: "api: reason: detail" (redacted) when the cycle failed
    failure: str | None = None


async def _one_cycle(source: Source, privacy: Privacy, emit: EventSink) -> CycleResult:
    sid = SourceId(vendor=source.vendor, account=source.account, scope=source.scope)
    state = SourceState()
    sweep = SweepDiff(sid, state, privacy, hand_on=False)  # one cycle: no next one to hand on to
    started = time.monotonic()
    count = 0

    def out(events: list[EventBase]) -> None:
        nonlocal count
        count += len(events)
        emit(events)

    async def page(snapshots: Sequence[EntitySnapshot]) -> None:
        out(sweep.apply(snapshots, datetime.now(UTC)))

    failure: tuple[str, str, str] | None = None
    try:
        observation = await source.observe(state, page)
    except Exception as exc:
        error = as_source_error(exc)
        if error is None:
            raise
        failure = (error.api or "?", error.reason.value, error.detail[:300])
    else:
        out(sweep.finish(observation, datetime.now(UTC)).events)
    _, health_events = health_transition(sid, state.health, failure, datetime.now(UTC))
    out(health_events)
    return CycleResult(
        source=sid.key,
        events=count,
        seconds=round(time.monotonic() - started, 3),
        failure=None if failure is None else ": ".join(failure),
    )


async def run_once(config: Config, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Exit 0 when every enabled source answered, 1 otherwise (the failures are named on stderr)."""
    redact = status_redactor(secret_values(config))
    privacy = Privacy(
        config.privacy.personal_data, config.privacy.hash_salt.reveal() if config.privacy.hash_salt else ""
    )
    encoder = msgspec.json.Encoder()

    def emit(events: list[EventBase]) -> None:
        # the events are exactly what the service would publish: personal data already went through
        # the configured privacy policy, as it does before a publish
        for event in events:
            out.write(encoder.encode(event).decode() + "\n")
        out.flush()

    results: list[CycleResult] = []
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout, trace_configs=[limiter_trace()]) as http:
        ctx = AdapterContext(http=http, limiters=LimiterRegistry())
        sources = [
            source
            for account in config.sources
            if account.enabled
            for source in VENDORS[account.vendor].sources(account, ctx)
        ]
        if not sources:
            print("run --once: no enabled source in the configuration", file=err)
            return 1

        async def cycle(source: Source) -> None:
            results.append(await _one_cycle(source, privacy, emit))

        async with anyio.create_task_group() as tg:
            for source in sources:
                tg.start_soon(cycle, source)
    failed = [r for r in results if r.failure is not None]
    for result in sorted(results, key=lambda r: r.source):
        if result.failure is None:
            print(f"ok      {result.source}: {result.events} event(s) in {result.seconds:.2f}s", file=err)
        else:
            print(f"FAILED  {result.source}: {redact(result.failure)}", file=err)
    verdict = "every source answered" if not failed else f"{len(failed)} of {len(results)} source(s) failed"
    print(f"run --once: {verdict}; nothing was published or committed", file=err)
    return 1 if failed else 0
