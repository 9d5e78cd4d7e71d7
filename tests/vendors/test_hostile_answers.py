"""One behaviour for all five adapters against hostile answers, each on its real simulator over HTTP.

Throttling (HTTP 429 or the vendor's own code, with ``Retry-After``), an undecodable 200 and an
absurd listing total are handled by the shared transport and listing code, so every vendor
answers them alike: the parametrized tests below run the same script against each simulator.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from poller.errors import BadResponse, TooLarge, as_source_error
from poller.pipeline.state import SourceState
from poller.simulators.base import Fault, Simulator
from poller.simulators.registry import demo_setups
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.transport import LimiterRegistry, SlidingWindowLimiter, Transport
from poller.transport.http import retry_after_seconds
from poller.vendors import VENDORS
from poller.vendors.base import AdapterContext, Source
from poller.vendors.tencent_ccc import TencentCccSource
from schemas import DegradeReason
from tests.helpers import make_config

#: the API each vendor's poll starts with (Huawei: the token, then one detail per watched id)
FIRST_API = {
    "tencent-ccc": "DescribeAutoCalloutTasks",
    "alibaba-aiccs": "ListTask",
    "alibaba-outboundbot": "ListJobsByGroup",
    "byrobot": "getTasks",
    "huawei-aicc": "token",
}
#: the API whose answers carry the entities
LISTING_API = {**FIRST_API, "huawei-aicc": "task_detail"}
#: the vendors whose poll reads a listing with a total the vendor reports
LISTING_VENDORS = ["tencent-ccc", "alibaba-aiccs", "alibaba-outboundbot", "byrobot"]
VENDOR_NAMES = sorted(FIRST_API)


@contextlib.asynccontextmanager
async def first_source(vendor: str, **extra: Any) -> AsyncIterator[tuple[Simulator, Source]]:
    """The vendor's demo simulator, running, and the first source its demo config yields."""
    setup = demo_setups(seed=7)[vendor]
    sim = setup.simulator
    async with sim:
        entries = [{**entry, "retries": 2, **extra} for entry in setup.sources(sim.url)]
        config = make_config("nats://127.0.0.1:1", entries)
        async with aiohttp.ClientSession() as http:
            ctx = AdapterContext(http=http, limiters=LimiterRegistry(), backoff_base=0.01)
            sources = VENDORS[vendor].sources(config.sources[0], ctx)
            yield sim, sources[0]


def _requests_after(sim: Simulator, at: float) -> list[float]:
    return [r.at for r in sim.log.records if r.at > at]


@pytest.mark.parametrize("fault", [Fault.RATE_LIMITED, Fault.THROTTLE], ids=["http-429", "vendor-code"])
@pytest.mark.parametrize("vendor", VENDOR_NAMES)
async def test_a_throttling_answer_with_retry_after_pauses_the_api_that_long(
    vendor: str, fault: Fault
) -> None:
    async with first_source(vendor) as (sim, source):
        sim.inject(fault, remaining=1, api=FIRST_API[vendor], retry_after="2")
        observation = await source.observe(SourceState())
    assert observation.entities, "the poll finished after the pause"
    (throttled,) = [r for r in sim.log.records if r.outcome == "throttled"]
    if fault is Fault.RATE_LIMITED:
        assert throttled.status == 429
    later = _requests_after(sim, throttled.at)
    assert later, "the request was retried"
    # the simulator's own log: nothing reached the vendor during the 2 s it asked for
    assert min(later) - throttled.at >= 2.0


async def test_retry_after_as_an_http_date_is_honoured() -> None:
    async with first_source("tencent-ccc") as (sim, source):
        until = datetime.now(UTC) + timedelta(seconds=3)
        sim.inject(Fault.RATE_LIMITED, remaining=1, retry_after=format_datetime(until, usegmt=True))
        await source.observe(SourceState())
    (throttled,) = [r for r in sim.log.records if r.outcome == "throttled"]
    # an HTTP-date has whole seconds: the pause is 2 to 3 s from the answer
    assert min(_requests_after(sim, throttled.at)) - throttled.at >= 1.9


async def test_a_throttling_answer_pauses_every_worker_of_the_api_at_once() -> None:
    async with first_source("tencent-ccc", page_size=1) as (sim, source):
        assert isinstance(sim, TencentCccSimulator) and isinstance(source, TencentCccSource)
        for _ in range(20):  # 20+ pages: at 20 requests/s they take a second to send
            sim.add_task(source.sdk_app_id)
        await source.observe(SourceState())  # learns the total: the next sweep asks every page at once
        sim.log.records.clear()
        sim.inject(Fault.RATE_LIMITED, remaining=1, after=1, retry_after="2")
        observation = await source.observe(SourceState())
    assert observation.complete and len(observation.entities) > 20
    (throttled,) = [r for r in sim.log.records if r.outcome == "throttled"]
    # requests already on the wire when the answer came may still arrive; none is sent after it
    assert not [t for t in _requests_after(sim, throttled.at) if throttled.at + 0.5 < t < throttled.at + 2.0]


async def test_a_retry_after_beyond_the_cap_pauses_only_up_to_the_cap() -> None:
    async with first_source("byrobot", max_retry_after=0.5) as (sim, source):
        sim.inject(Fault.RATE_LIMITED, remaining=1, retry_after="86400")
        started = time.monotonic()
        await source.observe(SourceState())
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("999999999999999999999999", 60.0),
        ("9" * 400, 60.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),  # 10 s after "now" below
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
        ("Wed, 21 Oct 2015 07:28:10 -0000", 10.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 99999 07:28:10 GMT", None),
    ],
)
def test_retry_after_values(value: str | None, seconds: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds(value, now=now, cap=60.0) == seconds


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
async def test_an_undecodable_200_is_retried_then_a_bad_response_for_every_vendor(vendor: str) -> None:
    api = LISTING_API[vendor]
    async with first_source(vendor) as (sim, source):
        sim.inject(Fault.MALFORMED, remaining=1, api=api)
        observation = await source.observe(SourceState())
        assert observation.entities
        assert [r.outcome for r in sim.log.records if r.api == api][:2] == ["malformed", "ok"]
        sim.clear_faults()
        sim.log.records.clear()
        sim.inject(Fault.TRUNCATED, api=api)
        with pytest.raises(Exception) as caught:  # pages read at once raise a group
            await source.observe(SourceState())
    error = as_source_error(caught.value)
    assert isinstance(error, BadResponse) and error.api == api
    outcomes = [r.outcome for r in sim.log.records if r.api == api]
    # each request: the first attempt and both retries, then the cycle fails as one BadResponse
    requests = 3 if vendor == "huawei-aicc" else 1  # Huawei: one detail per watched id, all failing
    assert outcomes == ["truncated"] * 3 * requests


@pytest.mark.parametrize("vendor", LISTING_VENDORS)
async def test_an_absurd_listing_total_is_refused_without_sizing_anything(vendor: str) -> None:
    async with first_source(vendor) as (sim, source):
        sim.inject(Fault.ABSURD_TOTAL, api=FIRST_API[vendor])
        with pytest.raises(TooLarge) as caught:
            await source.observe(SourceState())
    assert caught.value.reason is DegradeReason.TOO_LARGE
    assert caught.value.api == FIRST_API[vendor]
    # one page read, the total refused: not one more request
    assert sim.log.count(api=FIRST_API[vendor]) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_answer_body_beyond_the_bound_is_a_bad_response_not_a_memory_spike(chunked: bool) -> None:
    async def huge(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=b"x" * 200_000)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(200):  # would go on for 200 kB; the reader stops after the bound
            await response.write(b"x" * 1000)
        return response

    app = web.Application()
    app.router.add_get("/", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            transport = Transport(http, vendor="test", timeout=5.0, retries=0, max_body_bytes=50_000)

            async def prepare() -> tuple[dict[str, str], None]:
                return {}, None

            with pytest.raises(BadResponse) as caught:
                await transport.send(
                    "big",
                    SlidingWindowLimiter(10),
                    "GET",
                    f"http://127.0.0.1:{port}/",
                    parse=lambda resp: resp.body,
                    prepare=prepare,
                )
    finally:
        await runner.cleanup()
    assert "50000" in caught.value.detail and caught.value.api == "big"
