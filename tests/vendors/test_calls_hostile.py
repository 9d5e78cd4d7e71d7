"""Hostile call-level answers: never a crash, never a call event that repeats or lies."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.errors import BadResponse, SourceError
from poller.pipeline.state import SourceState
from poller.simulators.alibaba_aiccs import BEIJING, AiccsSimulator
from poller.simulators.base import Fault
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.transport import LimiterRegistry, Response
from poller.vendors import VENDORS
from poller.vendors.alibaba_aiccs import DETAIL_API, read_detail_page
from poller.vendors.alibaba_aiccs import call_snapshot as aiccs_call
from poller.vendors.alibaba_common import classifier
from poller.vendors.base import AdapterContext
from poller.vendors.normalize import UnreadableValues
from poller.vendors.tencent_ccc import CDR_API, LIST_API, classify_cdrs, classify_task
from poller.vendors.tencent_ccc import call_snapshot as tencent_call
from schemas.vendors.tencent_ccc import TelCdrInfo
from tests.helpers import make_config
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source
from tests.vendors.test_alibaba_vendors import AK, SECRET, adapters, aiccs_source

APP = 1400000099

numbers = (
    st.integers()
    | st.integers(-(2**63), 2**63 - 1)
    | st.none()
    | st.text(max_size=4)
    | st.floats(allow_nan=False)
)
cdr = st.fixed_dictionaries(
    {},
    optional={
        "SessionId": st.text(max_size=10) | st.integers(),
        "EndStatus": numbers,
        "EndStatusString": st.text(max_size=8) | st.none(),
        "Callee": st.text(max_size=12) | st.none(),
        "StartTimestamp": numbers,
        "RingTimestamp": numbers,
        "AcceptTimestamp": numbers,
        "EndedTimestamp": numbers,
        "Duration": numbers,
    },
)
tencent_bodies = st.fixed_dictionaries(
    {},
    optional={
        "Response": st.fixed_dictionaries(
            {},
            optional={
                "TotalCount": numbers,
                "TelCdrList": st.lists(cdr, max_size=3) | st.text(max_size=3),
                "Callees": st.lists(
                    st.fixed_dictionaries({}, optional={"Sessions": st.lists(st.text(max_size=5)) | numbers}),
                    max_size=3,
                ),
                "Error": st.fixed_dictionaries({"Code": st.text(max_size=20)}),
            },
        )
    },
).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=100)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=tencent_bodies)
def test_tencent_call_answers_are_classified_or_become_calls_never_a_crash(body: bytes) -> None:
    for parse in (classify_cdrs, classify_task):
        try:
            result = parse(Response(200, {}, body))
        except SourceError:
            continue
        for record in getattr(result, "TelCdrList", None) or []:
            call = tencent_call(record, "1", UnreadableValues("tencent-ccc", "fuzz"))
            assert call.call_id == record.SessionId
            assert call.duration_seconds is None or call.duration_seconds >= 0
            assert call.talk_seconds is None or call.talk_seconds >= 0


detail = st.fixed_dictionaries(
    {},
    optional={
        "Id": numbers,
        "Status": st.sampled_from(["SUCCESS", "FAIL", "INIT", ""]) | numbers,
        "StatusCode": st.text(max_size=6) | numbers,
        "EndTime": st.text(max_size=19) | st.just("9999-12-31 23:59:59") | numbers,
        "Duration": numbers,
        "RetryCurTimes": numbers,
    },
)
aiccs_bodies = st.fixed_dictionaries(
    {},
    optional={
        "Success": st.booleans() | st.text(max_size=4),
        "Code": st.text(max_size=6),
        "Data": st.fixed_dictionaries(
            {},
            optional={
                "PageNo": numbers,
                "PageSize": numbers,
                "Total": numbers,
                "Record": st.lists(detail, max_size=3) | numbers,
            },
        ),
    },
).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=100)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 400, 500]), body=aiccs_bodies)
def test_aiccs_detail_answers_are_classified_or_become_calls_never_a_crash(status: int, body: bytes) -> None:
    try:
        classifier(DETAIL_API)(Response(status, {}, body))
        page = read_detail_page(Response(status, {}, body))
    except SourceError:
        return
    assert status == 200
    for record in page.Record:
        call = aiccs_call(record, "1", BEIJING, UnreadableValues("alibaba-aiccs", "fuzz"))
        assert call.duration_seconds is None or call.duration_seconds >= 0


def test_a_record_ending_in_the_future_is_left_out_not_repeated() -> None:
    future = int(time.time()) + 86400
    told: list[str] = []
    values = UnreadableValues("tencent-ccc", "test", lambda _v, _a, field: told.append(field))
    record = TelCdrInfo(SessionId="s", EndStatus=1, EndedTimestamp=10**15, Duration=-5)
    call = tencent_call(record, "1", values)
    assert (call.ended_at, call.duration_seconds) == (None, None)  # not a time, not a duration
    assert told == ["ended_at", "duration_seconds"]
    assert tencent_call(TelCdrInfo(SessionId="s", EndStatus=1, EndedTimestamp=future), "1", values).ended_at


async def test_tencent_future_records_and_absurd_totals_never_become_events() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=1)
        good = sim.place_call(APP, task)
        future = sim.place_call(APP, task, listed=False)
        ahead = int((datetime.now(UTC) + timedelta(days=2)).timestamp())
        sim.list_cdr(APP, msgspec.structs.replace(future, EndedTimestamp=ahead))
        config = make_config("nats://127.0.0.1:1", [tencent_source(sim, [APP], retries=0)])
        async with aiohttp.ClientSession() as http:
            ctx = AdapterContext(http=http, limiters=LimiterRegistry(), backoff_base=0.01)
            (source,) = VENDORS["tencent-ccc"].sources(config.sources[0], ctx)
            first = await source.observe(SourceState())
            # the first cycle's state was not the one polled from next (its events not acked): what
            # it handed out is handed out again
            unproven = {k: v for k, v in first.cursors.items() if k != "cdr.cycle"}
            retried = await source.observe(SourceState(cursors=unproven))
            again = await source.observe(SourceState(cursors=retried.cursors))
            # a window claiming a billion records is a bad answer, not ten million page requests
            sim.claimed_cdr_total = 10**9
            before = sim.log.count(api=CDR_API)
            with pytest.raises(BadResponse, match="max_cdr_records"):
                await source.observe(SourceState())
            requests = sim.log.count(api=CDR_API) - before
    assert [c.call_id for c in first.calls] == [good.SessionId]
    # re-read inside the settle margin but known published: not handed out again; the future one never
    assert again.calls == []
    assert [c.call_id for c in retried.calls] == [good.SessionId]
    assert requests == 1


async def test_aiccs_details_ending_in_the_future_are_left_out() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        task = sim.add_task(status="RUNNING", total=3)
        good = sim.call(task)
        sim.call(task, ended=datetime.now(BEIJING) + timedelta(days=3))
        async with adapters(aiccs_source(sim)) as (source,):
            observation = await source.observe(SourceState())
    assert [c.call_id for c in observation.calls] == [f"{good.Id}.0"]


async def test_a_quiet_tasks_last_attempt_is_not_published_again_after_a_restart() -> None:
    """The cursor follows the clock: an attempt older than the margin is not new, even with no newer one."""
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        task = sim.add_task(status="RUNNING", total=3)
        attempt = sim.call(task)
        async with adapters(aiccs_source(sim, calls_settle=1)) as (source,):
            first = await source.observe(SourceState())
            await anyio.sleep(2.2)
            second = await source.observe(SourceState(cursors=first.cursors))
        async with adapters(aiccs_source(sim, calls_settle=1)) as (restarted,):
            third = await restarted.observe(SourceState(cursors=second.cursors))
    assert [c.call_id for c in first.calls] == [f"{attempt.Id}.0"]
    assert second.calls == [] and third.calls == []


async def test_short_reads_find_recent_calls_and_full_reads_the_long_ones() -> None:
    """Between full look-back reads the window reaches cdr_recent back: a call that started before
    that is found by the next full read, and the cursor only moves on full reads."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task = sim.add_task(APP, state=1, callees=5)
        extra = {"retries": 0, "cdr_recent": 30, "cdr_full_every": 2, "cdr_settle": 0}
        config = make_config("nats://127.0.0.1:1", [tencent_source(sim, [APP], **extra)])
        async with aiohttp.ClientSession() as http:
            ctx = AdapterContext(http=http, limiters=LimiterRegistry(), backoff_base=0.01)
            (source,) = VENDORS["tencent-ccc"].sources(config.sources[0], ctx)
            first = await source.observe(SourceState())  # full
            long_call = sim.place_call(APP, task, end_status=(1, "ok"), talk=1200)
            short_call = sim.place_call(APP, task, end_status=(1, "ok"), talk=10)
            short = await source.observe(SourceState(cursors=first.cursors))
            await anyio.sleep(2.1)
            full = await source.observe(SourceState(cursors=short.cursors))
            after = await source.observe(SourceState(cursors=full.cursors))
    assert [c.call_id for c in short.calls] == [short_call.SessionId]
    assert short.cursors.get("cdr.until", first.cursors["cdr.until"]) == first.cursors["cdr.until"]
    assert [c.call_id for c in full.calls] == [long_call.SessionId]
    assert full.cursors["cdr.until"] > first.cursors["cdr.until"]
    assert after.calls == []


async def test_a_listing_that_missed_a_task_does_not_take_its_call_for_a_seats_own() -> None:
    """Pages that disagree may leave a task out: its call is looked up again once a listing is whole."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        tasks = [sim.add_task(APP, state=1) for _ in range(4)]  # pages of three: the last one alone
        call = sim.place_call(APP, tasks[-1])
        sim.inject(Fault.EMPTY_LISTING, api=LIST_API, after=1, remaining=1)  # its page lists nothing
        config = make_config("nats://127.0.0.1:1", [tencent_source(sim, [APP], retries=0)])
        async with aiohttp.ClientSession() as http:
            ctx = AdapterContext(http=http, limiters=LimiterRegistry(), backoff_base=0.01)
            (source,) = VENDORS["tencent-ccc"].sources(config.sources[0], ctx)
            partial = await source.observe(SourceState())
            whole = await source.observe(SourceState(cursors=partial.cursors))
    assert not partial.complete and len(partial.entities) == 3 and partial.calls == []
    # nor does the read window move on past it: a task missing longer than the settle time would
    # otherwise leave its calls behind the cursor for good
    assert "cdr.until" not in partial.cursors
    assert whole.complete and "cdr.until" in whole.cursors
    assert [(c.call_id, c.task_id) for c in whole.calls] == [(call.SessionId, str(tasks[-1]))]
