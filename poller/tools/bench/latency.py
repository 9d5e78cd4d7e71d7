"""Detection latency and rate-limit use: one probe per (scenario, poller) against fresh processes."""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import nats

from poller.config import Config, parse_config
from poller.runtime.service import Service
from poller.simulators.base import RequestLog, max_in_window
from poller.tools.bench.baseline import (
    PlainPoller,
)
from poller.tools.bench.progress import Progress, quantile
from poller.tools.bench.publish import stream_config
from poller.tools.bench.report import fmt
from poller.tools.bench.results import LatencyRow, RunResult
from poller.tools.bench.scenarios import (
    OutboundBotActiveScenario,
    Scenario,
    TencentScenario,
    outboundbot_scenario,
)
from poller.tools.bench.simprocess import SimulatorProcess
from poller.tools.bench.sizes import OURS_PREFIX, PLAIN_PREFIX, Sizes
from poller.tools.bench.tracker import (
    ChangeTracker,
    EventRouter,
    parse_our_event,
    parse_plain_event,
    subscribed,
)
from poller.tools.natsserver import NatsServer
from poller.vendors.tencent_ccc import LIST_API

__all__ = ["RESTART_SHARE", "LatencyProbe", "arrival_rate", "bench_latency", "latency_run"]

#: restarts are made in this first part of the change window: the drain then waits out each one's
#: staleness bound mostly inside the window, not after it
RESTART_SHARE = 0.5


async def _watch_sweeps(service: Service, ends: list[float], stop: anyio.Event) -> None:
    """Record when each successful poll cycle ends (the Service sets ``last_success``)."""
    last: float | None = None
    while not stop.is_set():
        for status in service.statuses.values():
            if status.last_success is not None and status.last_success != last:
                last = status.last_success
                ends.append(last)
        await anyio.sleep(0.01)


async def _wait(
    done: Callable[[], bool], timeout: float, every: float, report: Callable[[], Awaitable[None]]
) -> bool:
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + every
    while not done():
        if time.monotonic() > deadline:
            return False
        if time.monotonic() >= next_report:
            await report()
            next_report += every
        await anyio.sleep(0.02)
    return True


def arrival_rate(times: Sequence[float]) -> float:
    """Requests per second: the least-squares slope of the arrival count over time.

    Our limiter starts requests in bursts (a full window's worth at once, then a pause); a plain
    count over the window swings by up to one burst depending on where the window's edges fall.
    The slope of the cumulative count does not.
    """
    n = len(times)
    if n < 2:
        return 0.0
    mean_t = statistics.fmean(times)
    mean_i = (n - 1) / 2
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (i - mean_i) for i, t in enumerate(times)) / spread


@dataclass
class LatencyProbe:
    """One latency run's phases: first sweep, timed changes, drain; and its figures afterwards."""

    scn: Scenario
    name: str
    sim: SimulatorProcess
    tracker: ChangeTracker
    progress: Progress
    every: float
    #: restarts of finished entities: a tracker of their own, never among the live changes' samples
    restarts: ChangeTracker = field(default_factory=ChangeTracker)
    started: float = 0.0
    ends: float = 0.0
    last_restart: float = 0.0
    first_sweep_seconds: float = 0.0

    async def report(self, phase: str) -> None:
        t = self.tracker
        requests, throttled = await self.sim.stats()
        p50 = quantile(t.samples, 0.5)
        self.progress(
            f"{self.name}: {phase}; {requests:,} requests, {throttled} throttled; "
            f"{t.appeared:,}/{self.scn.entities:,} appeared; changes {t.changes} seen {len(t.samples)}"
            + ("" if p50 is None else f", p50 {p50:.2f} s")
            + (
                f"; restarts {self.restarts.changes} seen {len(self.restarts.samples)}"
                if self.restarts.changes
                else ""
            )
        )

    async def first_sweep(self) -> None:
        scn = self.scn
        self.progress(
            f"{self.name}: {scn.entities:,} {scn.unit}, {scn.pages} pages at {scn.limit} req/s "
            f"(floor {scn.floor:.2f} s); first sweep"
        )
        timeout = 4 * scn.floor + scn.entities / 500 + 30
        began = time.monotonic()
        everything = await _wait(
            lambda: self.tracker.appeared >= scn.entities,
            timeout,
            self.every,
            functools.partial(self.report, "first sweep"),
        )
        if not everything:
            raise RuntimeError(f"{self.name}: the first sweep did not publish every entity in time")
        self.first_sweep_seconds = time.monotonic() - began

    def begin(self, seconds: float) -> None:
        """The change window starts now (changes and restarts are timed within it)."""
        self.started = time.monotonic()
        self.ends = self.started + seconds

    async def make_changes(self, per_second: float, seed: int) -> None:
        """Poisson arrivals, so change times are uniform with respect to the sweep's phase."""
        rng = random.Random(seed)
        ids = self.sim.ids
        seconds = self.ends - self.started
        next_change = self.started
        next_report = self.started + self.every
        while True:
            next_change += rng.expovariate(per_second)
            if next_change >= self.ends:
                break
            await anyio.sleep(max(0.0, next_change - time.monotonic()))
            entity_id = rng.choice(ids)
            while self.tracker.busy(entity_id):
                entity_id = rng.choice(ids)
            raw, at = await self.sim.change(entity_id)
            self.tracker.made(entity_id, raw, at)
            if time.monotonic() >= next_report:
                await self.report(f"changing {time.monotonic() - self.started:.0f}/{seconds:.0f} s")
                next_report += self.every
        await anyio.sleep(max(0.0, self.ends - time.monotonic()))

    async def make_restarts(self, ids: Sequence[str], seed: int) -> None:
        """Restart these finished entities at uniform times over the window's first part (as the
        changes are, uniform with respect to the relist's phase)."""
        rng = random.Random(f"restart times {seed}")
        span = RESTART_SHARE * (self.ends - self.started)
        times = sorted(self.started + rng.uniform(0.0, span) for _ in ids)
        for when, entity_id in zip(times, ids, strict=True):
            await anyio.sleep(max(0.0, when - time.monotonic()))
            raw, at = await self.sim.restart(entity_id)
            self.restarts.made(entity_id, raw, at)
            self.last_restart = at

    async def drain(self) -> None:
        """Changes made near the end are still timed; one never seen counts as missed. Restarts are
        then waited for up to the staleness bound of the last one (the live changes' figures are
        closed first, so the longer wait does not change them)."""
        await _wait(
            lambda: not self.tracker.pending,
            3 * self.scn.floor + 10,
            self.every,
            functools.partial(self.report, "draining"),
        )
        self.tracker.close()
        bound = self.scn.max_staleness
        if self.restarts.changes and bound is not None:
            await _wait(
                lambda: not self.restarts.pending,
                max(0.0, self.last_restart + bound - time.monotonic()),
                self.every,
                functools.partial(self.report, "draining restarts"),
            )
        self.restarts.close()

    def result(self, who: str, log: RequestLog, sweep_ends: list[float]) -> RunResult:
        arrivals = log.times(self.scn.api)
        window = self.ends - self.started
        in_window = [t for t in arrivals if self.started <= t < self.ends]
        per_second = arrival_rate(in_window)
        steady = [t for t in sweep_ends if self.started <= t <= self.ends]
        periods = [b - a for a, b in itertools.pairwise(steady)]
        samples = self.tracker.samples
        return RunResult(
            who=who,
            window_seconds=round(window, 3),
            requests_in_window=len(in_window),
            per_second=per_second,
            limit_use=per_second / self.scn.limit,
            throttled=sum(log.count("throttled", api) for api in (self.scn.api, *self.scn.extra_apis)),
            max_in_window=max(max_in_window(log.times(api)) for api in (self.scn.api, *self.scn.extra_apis)),
            changes=self.tracker.changes,
            samples=len(samples),
            missed=len(self.tracker.pending),
            p50=quantile(samples, 0.5),
            p99=quantile(samples, 0.99),
            mean=statistics.fmean(samples) if samples else None,
            max=max(samples) if samples else None,
            sweep_seconds=statistics.median(periods) if periods else None,
            first_sweep_seconds=round(self.first_sweep_seconds, 3),
            restarts=self.restarts.changes,
            restarts_missed=len(self.restarts.pending),
            restart_p50=quantile(self.restarts.samples, 0.5),
            restart_max=max(self.restarts.samples, default=None),
        )


def _bench_config(nats_url: str, source: dict[str, Any]) -> Config:
    return parse_config(
        {
            "nats": {"url": nats_url},
            "http": {"enabled": False},
            "logging": {"level": "WARNING"},
            "sources": [source],
        },
        path="<bench>",
        env={},
    )


async def latency_run(
    scn: Scenario, who: str, sizes: Sizes, seed: int, progress: Progress
) -> tuple[RunResult, dict[str, list[float]]]:
    """Fresh nats-server and simulator; the poller (ours or plain) sweeps; changes are timed."""
    ours = who == "ours"
    tracker = ChangeTracker()
    sweep_ends: list[float] = []
    restarts = sizes.restarts if scn.max_staleness is not None else 0
    with NatsServer() as server:
        subject = f"{OURS_PREFIX if ours else PLAIN_PREFIX}.>"
        async with SimulatorProcess(scn, seed, restarts) as sim, contextlib.AsyncExitStack() as stack:
            probe = LatencyProbe(scn, f"{scn.name} {who}", sim, tracker, progress, sizes.progress_every)
            router = EventRouter(
                parse_our_event if ours else parse_plain_event,
                tracker,
                dict.fromkeys(sim.restartable, probe.restarts),
            )
            stack.enter_context(subscribed(server.url, subject, router))
            nc = await nats.connect(server.url)
            stack.push_async_callback(nc.close)
            stop = anyio.Event()
            plain: PlainPoller | None = None
            service: Service | None = None
            if ours:
                service = Service(_bench_config(server.url, scn.source(sim.url)))
            else:
                js = nc.jetstream(timeout=10)
                await js.add_stream(stream_config("BASELINE", PLAIN_PREFIX))
                http = await stack.enter_async_context(aiohttp.ClientSession())
                plain = scn.plain_poller(sim.url, http, js)
                sweep_ends = plain.stats.sweeps
            # entered last, so left first: the pollers stop before the session and connection close
            tg = await stack.enter_async_context(anyio.create_task_group())
            if service is not None:
                tg.start_soon(service.run)
                tg.start_soon(_watch_sweeps, service, sweep_ends, stop)
            elif plain is not None:
                tg.start_soon(plain.run, stop)
            await probe.first_sweep()
            probe.begin(sizes.change_seconds)
            async with anyio.create_task_group() as changing:
                changing.start_soon(probe.make_restarts, sim.restartable, seed)
                await probe.make_changes(sizes.changes_per_second, seed)
            await probe.drain()
            stop.set()
            if service is not None:
                service.stop()
            log = await sim.log()
    result = probe.result(who, log, sweep_ends)
    progress(
        f"{probe.name}: {result.limit_use:.1%} of the limit, {result.throttled} throttled, "
        f"p50 {fmt(result.p50, 's')}, p99 {fmt(result.p99, 's')} over {result.samples} changes"
        + (
            f"; restarts seen within {fmt(result.restart_max, 's')}, {result.restarts_missed} of "
            f"{result.restarts} missed"
            if result.restarts
            else ""
        )
    )
    return result, {api: log.times(api) for api in (scn.api, *scn.extra_apis)}


async def bench_latency(
    sizes: Sizes,
    seed: int,
    progress: Progress,
    arrivals: dict[str, tuple[int, list[float]]],
    vendors: Sequence[str] = (),
) -> list[LatencyRow]:
    rows: list[LatencyRow] = []
    candidates: list[tuple[str, str, str, int, int, Scenario | str]] = [
        (
            "tencent-ccc",
            "tencent-ccc",
            LIST_API,
            sizes.tencent_tasks,
            sizes.tencent_page_size,
            TencentScenario(sizes.tencent_tasks, sizes.tencent_page_size),
        ),
        (
            "alibaba-outboundbot",
            "alibaba-outboundbot",
            "ListJobsByGroup",
            sizes.outboundbot_jobs,
            sizes.outboundbot_page_size,
            outboundbot_scenario(sizes),
        ),
        (
            "alibaba-outboundbot",
            OutboundBotActiveScenario.name,
            "ListJobsByGroup",
            sizes.outboundbot_jobs,
            sizes.outboundbot_page_size,
            outboundbot_scenario(sizes, OutboundBotActiveScenario),
        ),
    ]
    for vendor, name, api, entities, page_size, scn in candidates:
        if vendors and name not in vendors:
            continue
        if isinstance(scn, str):
            progress(f"{vendor} {api}: {scn}")
            rows.append(
                LatencyRow(
                    vendor=vendor,
                    name=name,
                    api=api,
                    label=f"{name} {api}",
                    entities=entities,
                    page_size=page_size,
                    pages=-(-entities // page_size),
                    limit=0,
                    floor_seconds=0.0,
                    bar_seconds=0.0,
                    ideal_p50=0.0,
                    ideal_p99=0.0,
                    measured=False,
                    note=scn,
                    max_staleness=(
                        OutboundBotActiveScenario.MAX_STALENESS
                        if name == OutboundBotActiveScenario.name
                        else None
                    ),
                )
            )
            continue
        ours, ours_arrivals = await latency_run(scn, "ours", sizes, seed, progress)
        arrivals[f"{name} ours"] = (scn.limit, ours_arrivals[api])
        for extra in scn.extra_apis:
            if ours_arrivals[extra]:  # an API this run did not need has no log to check
                arrivals[f"{name} ours {extra}"] = (scn.limit, ours_arrivals[extra])
        plain, plain_arrivals = await latency_run(scn, "baseline", sizes, seed, progress)
        arrivals[f"{name} baseline"] = (scn.limit, plain_arrivals[api])
        rows.append(
            LatencyRow(
                vendor=vendor,
                name=name,
                api=api,
                label=scn.label,
                entities=entities,
                page_size=page_size,
                pages=scn.pages,
                limit=scn.limit,
                floor_seconds=scn.floor,
                bar_seconds=scn.bar_factor * scn.floor,
                ideal_p50=0.5 * scn.floor,
                ideal_p99=0.99 * scn.floor,
                measured=True,
                max_staleness=scn.max_staleness,
                ours=ours,
                baseline=plain,
            )
        )
    return rows
