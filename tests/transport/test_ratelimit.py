"""Rate limits are law: proved from the simulator's own log of arrival times, not from our counters."""

from __future__ import annotations

import itertools
import time

import anyio
import pytest

from poller.pipeline.state import SourceState
from poller.secrets import Secret
from poller.simulators.base import Fault, max_in_window
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.transport import limiter_trace
from poller.transport.ratelimit import CATCH_UP, LimiterRegistry, SlidingWindowLimiter
from poller.vendors.base import AdapterContext
from poller.vendors.tencent_ccc import LIST_API, TencentCccAccount, TencentCccSource

SECRET_ID, SECRET_KEY = "AKIDlimit", "limit-secret"


async def test_limiter_never_starts_more_than_the_limit_in_any_window() -> None:
    limiter = SlidingWindowLimiter(10)
    starts: list[float] = []

    async def worker() -> None:
        for _ in range(4):
            slot = await limiter.acquire()
            slot.sent()
            starts.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(worker)
    assert len(starts) == 32
    assert max_in_window(starts) <= 10
    # and it did not dawdle: 32 starts at 10 per window need just over three windows (a limiter that
    # idled a window between batches would need four; the margin is the event loop's lag under load)
    assert max(starts) - min(starts) < 3.8


async def test_a_request_not_yet_sent_holds_its_place_in_the_window() -> None:
    """A request allowed but stuck before the socket must not let a later one crowd the window."""
    limiter = SlidingWindowLimiter(2, window=0.2, margin=0.0)
    stuck = await limiter.acquire()
    (await limiter.acquire()).sent()
    with anyio.move_on_after(0.15) as waited:
        await limiter.acquire()
    assert waited.cancelled_caught  # the unsent one still counts: no third start within the window
    stuck.sent()
    with anyio.fail_after(0.5):
        await limiter.acquire()  # one window after both were sent, there is room again


async def test_throttle_answer_pauses_every_worker_and_lowers_the_limit() -> None:
    limiter = SlidingWindowLimiter(20)
    (await limiter.acquire()).sent()
    limiter.throttled(retry_after=0.3)
    assert limiter.effective_limit() < 20
    before = anyio.current_time()
    await limiter.acquire()
    assert anyio.current_time() - before >= 0.29


@pytest.mark.parametrize("limit", [20])
async def test_many_workers_over_real_http_never_exceed_the_vendor_window(limit: int) -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, rate_limit=limit) as sim:
        for _ in range(30):
            sim.add_task(1400000300)
        import aiohttp

        async with aiohttp.ClientSession(trace_configs=[limiter_trace()]) as http:
            ctx = AdapterContext(http=http, limiters=LimiterRegistry())
            account = TencentCccAccount(
                vendor="tencent-ccc",
                account="limit",
                secret_id=SECRET_ID,
                secret_key=Secret(SECRET_KEY),
                sdk_app_ids=[1400000300],
                endpoint=sim.url,
                page_size=10,
                # the simulator shares this test's event loop, so a loaded machine delays its
                # arrival stamps: the jitter margin (documented for networks) absorbs that here
                rate_limit_margin=0.1,
            )
            # three sources share one credential, so one limiter; each pages concurrently
            sources = [TencentCccSource(account, ctx, 1400000300) for _ in range(3)]

            async def hammer(source: TencentCccSource) -> None:
                with anyio.move_on_after(2.6):
                    while True:
                        await source._page(0)

            async with anyio.create_task_group() as tg:
                for source in sources:
                    for _ in range(12):
                        tg.start_soon(hammer, source)
            arrivals_before_throttle = sim.log.times(LIST_API)
            # one throttling answer: everyone pauses, then climbs back, still within the window
            sim.inject(Fault.THROTTLE, remaining=1)
            async with anyio.create_task_group() as tg:
                for source in sources:
                    for _ in range(12):
                        tg.start_soon(hammer, source)
    throttled = [r for r in sim.log.records if r.outcome == "throttled"]
    assert len(throttled) == 1  # only the injected one: we never tripped the real limit
    arrivals = sim.log.times(LIST_API)
    assert max_in_window(arrivals) <= limit
    # with a backlog the budget is used (loosely here; the benchmark reports the exact figure)
    steady = [t for t in arrivals_before_throttle if min(arrivals_before_throttle) + 0.5 <= t]
    assert len(steady) >= 0.8 * limit * 2.0
    # after the throttle answer nobody started for a pause of about one window; what arrives in the
    # first few milliseconds was already in flight when the answer went out
    pause = [t for t in arrivals if throttled[0].at + 0.1 < t < throttled[0].at + 0.9]
    assert pause == []
    assert any(t >= throttled[0].at + 0.9 for t in arrivals)


async def test_starts_are_paced_evenly_and_lateness_does_not_add_up() -> None:
    """With a backlog, one start every window/limit: no bursts, and (nearly) all of the limit used."""
    limiter = SlidingWindowLimiter(20)
    starts: list[float] = []

    async def worker() -> None:
        for _ in range(10):
            slot = await limiter.acquire()
            slot.sent()
            starts.append(anyio.current_time())
            await anyio.sleep(0.002)  # a busy loop: every wake-up a little late

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(worker)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    spacing = limiter.window / 20
    assert max_in_window(starts) <= 20
    assert min(gaps) > 0.5 * spacing  # never two starts together: paced, not burst
    # 60 starts on the grid: 59 spacings, not 59 spacings plus every wake-up's lateness
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert rate >= 0.96 * 20, rate


async def test_a_stall_costs_no_starts_and_its_starts_follow_at_twice_the_pace() -> None:
    """The event loop held up (a cycle's end) for less than CATCH_UP of a window: made up for."""
    limit = 20
    limiter = SlidingWindowLimiter(limit)
    spacing = limiter.window / limit
    stall = 0.6 * CATCH_UP * limiter.window
    starts: list[float] = []
    # counted before the stall comes round again a window later (it is made up for again then)
    horizon = 0.9 * limiter.window + 2 * stall

    async def worker() -> None:
        while not starts or limiter.clock() - starts[0] < horizon:
            slot = await limiter.acquire()
            slot.sent()
            starts.append(limiter.clock())
            if len(starts) == 5:
                time.sleep(stall)  # noqa: ASYNC251  (blocks the event loop, as a cycle's end does)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(worker)
    counted = [t for t in starts if t - starts[0] < horizon]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max_in_window(starts, limiter.window) <= limit
    assert min(gaps) >= 0.5 * spacing - 0.002  # made up at twice the pace, never together
    # as many starts as the grid holds in that time; without making up for it, the stall would cost three
    on_grid = int(horizon / spacing) + 1
    assert len(counted) >= on_grid - 1, (len(counted), on_grid)


async def test_a_throttling_pause_is_not_made_up_for() -> None:
    limit = 20
    limiter = SlidingWindowLimiter(limit)
    for _ in range(5):
        (await limiter.acquire()).sent()
    limiter.throttled(retry_after=0.2)
    starts: list[float] = []
    for _ in range(6):
        (await limiter.acquire()).sent()
        starts.append(limiter.clock())
    spacing = limiter.window / limiter.effective_limit()
    # after the pause, starts are paced at the lowered limit from the start: no catching up
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.9 * spacing


async def test_a_big_sweep_does_not_starve_a_small_source_on_the_same_credential() -> None:
    """Two SdkAppIds of one account share a limiter: 60 pages of one must not queue ahead of the other."""
    import aiohttp

    big_app, small_app = 1400000301, 1400000302
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        for _ in range(180):
            sim.add_task(big_app)
        for _ in range(6):
            sim.add_task(small_app)
        async with aiohttp.ClientSession(trace_configs=[limiter_trace()]) as http:
            ctx = AdapterContext(http=http, limiters=LimiterRegistry())
            account = TencentCccAccount(
                vendor="tencent-ccc",
                account="fair",
                secret_id=SECRET_ID,
                secret_key=Secret(SECRET_KEY),
                sdk_app_ids=[big_app, small_app],
                endpoint=sim.url,
                page_size=3,
                rate_limits={LIST_API: 10},
            )
            big, small = TencentCccSource(account, ctx, big_app), TencentCccSource(account, ctx, small_app)
            done: dict[str, float] = {}
            started = anyio.current_time()

            async def sweep(name: str, source: TencentCccSource) -> None:
                observation = await source.observe(SourceState())
                assert observation.complete
                done[name] = anyio.current_time() - started

            async with anyio.create_task_group() as tg:
                tg.start_soon(sweep, "big", big)
                await anyio.sleep(0.05)  # the big sweep's first page is out and its workers queue up
                tg.start_soon(sweep, "small", small)
    assert done["big"] > 5.0  # 60 pages at 10 per second
    # the small source's 2 pages wait behind about one window of the big one's requests, not all 59
    assert done["small"] < 2.5, done
    assert max_in_window(sim.log.times(LIST_API)) <= 10
