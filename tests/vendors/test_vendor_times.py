"""Vendor times that cannot be read reach no event as the vendor wrote them.

``started_at`` and ``ended_at`` are ``date-time`` in the contract: a consumer that validates it must
never get a vendor's odd string there. Every adapter that publishes call times gives an RFC 3339
time or null; what it could not read is logged once by its shape (never its content) and counted
in ``aicc_vendor_values_unreadable_total``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.pipeline.state import SourceState
from poller.simulators.alibaba_aiccs import AiccsSimulator
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.tools.natsserver import NatsServer
from poller.transport import LimiterRegistry
from poller.vendors import VENDORS
from poller.vendors.alibaba_aiccs import call_snapshot as aiccs_call
from poller.vendors.base import AdapterContext, Source
from poller.vendors.byrobot import UnreadableTime, _order_time, time_given, vendor_time
from poller.vendors.byrobot import call_snapshot as byrobot_call
from poller.vendors.normalize import UnreadableValues, value_shape
from poller.vendors.tencent_ccc import CDR_API
from poller.vendors.tencent_ccc import call_snapshot as tencent_call
from schemas import CallFinished, Event
from schemas.vendors.alibaba import TaskDetailRecord
from schemas.vendors.byrobot import DoneCall
from schemas.vendors.tencent_ccc import TelCdrInfo
from tests.helpers import (
    contract_violations,
    is_rfc3339,
    make_config,
    polls_done,
    running,
    stream_payloads,
    wait_until,
)
from tests.system.test_tencent_e2e import SECRET_ID, SECRET_KEY, tencent_source
from tests.vendors.test_alibaba_vendors import AK, SECRET, aiccs_source
from tests.vendors.test_byrobot import COMPANY, byrobot_source, simulator

UTC_PLUS_8 = timezone(timedelta(hours=8))
TENCENT_APP = 1400000077
INT64 = st.integers(-(2**63), 2**63 - 1)
wall_clock = st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")
)
#: what a vendor may put in a time field: nothing, epoch numbers of any size, the documented shape,
#: the documented shape with something after it, and anything at all
time_values = (
    st.none()
    | INT64
    | INT64.map(str)
    | wall_clock
    | st.tuples(wall_clock, st.sampled_from([".5", "+09:00", "Z", " ", "x"])).map("".join)
    | st.text(max_size=24)
)


def logged(record: logging.LogRecord) -> str:
    """What a log line says: its message and the context it carries."""
    context = (getattr(record, key, "") for key in ("vendor", "account", "field", "shape"))
    return " ".join([record.getMessage(), *map(str, context)])


class Told:
    """An :class:`UnreadableValues` whose count is kept here."""

    def __init__(self, vendor: str) -> None:
        self.fields: list[str] = []
        self.values = UnreadableValues(vendor, "test", lambda _v, _a, field: self.fields.append(field))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=time_values, end=time_values)
def test_every_call_time_an_adapter_publishes_is_rfc3339_or_null(start: Any, end: Any) -> None:
    """The class of defect, for every adapter that publishes call times (OutboundBot has none and
    Huawei publishes no calls): a time is RFC 3339, or null; and null for a time the vendor did give
    is always reported, never silent."""
    told = Told("byrobot")
    call = byrobot_call(
        DoneCall(callInstanceId=1, startTime=start, endTime=end), "1", UTC_PLUS_8, None, told.values
    )
    published = {"started_at": (start, call.started_at), "ended_at": (end, call.ended_at)}
    for raw, value in published.values():
        assert value is None or is_rfc3339(value), (raw, value)
    assert told.fields == [f for f, (raw, value) in published.items() if value is None and time_given(raw)]

    texts = {"started_at": start, "ended_at": end}
    if all(v is None or isinstance(v, str) for v in texts.values()):
        told = Told("alibaba-aiccs")
        record = TaskDetailRecord(Id=1, Status="SUCCESS", StatusCode="200000", StartTime=start, EndTime=end)
        attempt = aiccs_call(record, "1", UTC_PLUS_8, told.values)
        given_back = {"started_at": attempt.started_at, "ended_at": attempt.ended_at}
        for value in given_back.values():
            assert value is None or is_rfc3339(value)
        assert told.fields == [f for f, value in given_back.items() if value is None and texts[f]]

    numbers = {"started_at": start, "ended_at": end}
    if all(v is None or isinstance(v, int) for v in numbers.values()):
        told = Told("tencent-ccc")
        cdr = tencent_call(
            TelCdrInfo(SessionId="s", EndStatus=1, StartTimestamp=start, EndedTimestamp=end), "1", told.values
        )
        epochs = {"started_at": cdr.started_at, "ended_at": cdr.ended_at}
        assert all(v is None or is_rfc3339(v) for v in epochs.values())
        assert sorted(told.fields) == sorted(f for f, value in epochs.items() if value is None and numbers[f])


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2018/01/24 20:51:53", "another date shape"),
        ("2018-02-30 10:00:00", "no such day"),
        ("2018-01-24 25:00:00", "no such hour"),
        ("2018-01-24 20:51:53+09:00", "a zone of its own: read in the configured one it would be wrong"),
        ("2018-01-24T20:51:53Z", "ISO 8601, which the doc does not describe"),
        ("-1516798313000", "a negative epoch"),
        (10**17, "epoch milliseconds beyond the calendar"),
        ("10000000000000000000", "the same, as a string"),
        ("张先生", "a name"),
    ],
)
def test_byrobot_times_it_cannot_read_are_refused_not_kept(value: str | int, why: str) -> None:
    with pytest.raises(UnreadableTime):
        vendor_time(value, UTC_PLUS_8)
    assert time_given(value), why  # there was a time: a pushed call with it has ended


def test_byrobot_times_it_reads() -> None:
    assert vendor_time("2018-01-24 20:51:53.250", UTC_PLUS_8) == "2018-01-24T20:51:53+08:00"
    assert vendor_time(" 2018-01-24 20:51:53 ", UTC_PLUS_8) == "2018-01-24T20:51:53+08:00"
    assert vendor_time("1516798313000", UTC_PLUS_8) == "2018-01-24T20:51:53+08:00"
    for none in (None, "", " ", 0, "0", -5):
        assert vendor_time(none, UTC_PLUS_8) is None and not time_given(none)


def test_calls_without_call_index_keep_the_order_their_count_cursor_was_committed_on() -> None:
    """The paging fallback orders a task's calls by end time and commits how many it published: the
    order of calls with odd times must not move when they stop being published verbatim."""
    assert _order_time("2018-01-24 20:51:53", UTC_PLUS_8) == "2018-01-24T20:51:53+08:00"
    assert _order_time("2018-01-24 20:51:53+09:00", UTC_PLUS_8) == "2018-01-24T20:51:53+08:00"
    assert _order_time(" 2018/01/24 ", UTC_PLUS_8) == "2018/01/24"
    assert _order_time(10**17, UTC_PLUS_8) == str(10**17)
    assert _order_time(None, UTC_PLUS_8) == _order_time("", UTC_PLUS_8) == _order_time(0, UTC_PLUS_8) == ""


def test_a_shape_says_what_a_value_looks_like_not_what_it_says() -> None:
    assert value_shape("2018/01/24 20:51") == "N/N/N N:N"
    assert value_shape("张先生 13812345678") == "a N"
    assert value_shape("yesterday 10am") == "a Na"
    assert value_shape(10**17) == "int"
    assert len(value_shape("x1" * 100)) == 32


def test_an_unreadable_value_is_logged_once_per_field_and_shape_and_counted_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    told = Told("byrobot")
    caplog.set_level(logging.WARNING, logger="poller.vendors.normalize")
    for end in ("13812345678 王", "13912345678 李", "2018/01/24"):
        for _ in range(2):
            byrobot_call(DoneCall(callInstanceId=1, endTime=end), "1", UTC_PLUS_8, None, told.values)
    assert told.fields == ["ended_at"] * 6
    lines = [r for r in caplog.records if r.getMessage().startswith("unreadable vendor value")]
    assert [(getattr(r, "field", None), getattr(r, "shape", None)) for r in lines] == [
        ("ended_at", "N a"),
        ("ended_at", "N/N/N"),
    ]
    assert not any("138" in logged(r) or "王" in logged(r) for r in lines)


# -- through the service: the simulator answers odd times, the stream is checked against the schema --
ODD_TIMES: list[dict[str, str | int]] = [
    {"end": "2024/05/06 10:00:00"},
    {"start": "2024-02-30 09:59:00"},
    {"end": "2024-05-06 10:00:00+09:00"},
    {"end": 10**17},
    {"start": "张先生", "end": "13812345678 先生"},
]


async def test_byrobot_calls_with_times_it_cannot_read_fit_the_contract_with_null_times(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    sim = simulator()
    caplog.set_level(logging.WARNING, logger="poller.vendors.normalize")
    async with sim:
        task = sim.add_task(COMPANY, phones=len(ODD_TIMES) + 2, status=1)
        callees = [c.instance_id for c in sim.tasks[task].calls]
        for instance_id, times in zip(callees, ODD_TIMES, strict=False):
            sim.write_times(instance_id, **times)
        sim.finish_calls(task, [0, 1, 2, 0, 6, 0, 4])
        async with running(make_config(nats_server.url, [byrobot_source(sim)])) as service:

            async def all_published() -> bool:
                calls = [p for p in await stream_payloads(nats_server.url) if b'"call-finished"' in p]
                return len(calls) == len(callees)

            await wait_until(all_published, timeout=15)
            await polls_done(service, 2)
            metrics = service.metrics_exposition().decode()
        payloads = await stream_payloads(nats_server.url)

    violations = [v for payload in payloads for v in contract_violations(payload)]
    assert violations == [], "\n".join(violations)
    events = [msgspec.json.decode(p, type=Event) for p in payloads]
    calls = {e.call_id: e for e in events if isinstance(e, CallFinished)}
    times = {int(k): (c.started_at, c.ended_at) for k, c in calls.items()}
    real = {c.instance_id: c for c in sim.tasks[task].calls}
    expected = {}
    for instance_id in callees:
        call = real[instance_id]
        assert call.started is not None and call.ended is not None
        odd = call.start_text is not None, call.end_text is not None
        expected[instance_id] = (
            None if odd[0] else call.started.isoformat(),
            None if odd[1] else call.ended.isoformat(),
        )
    assert times == expected  # what could be read is published, what could not is null
    for field, count in (("ended_at", 4), ("started_at", 2)):
        sample = f'aicc_vendor_values_unreadable_total{{account="by-main",field="{field}",vendor="byrobot"}}'
        assert f"{sample} {float(count)}" in metrics
    lines = [r for r in caplog.records if r.getMessage().startswith("unreadable vendor value")]
    assert len(lines) == 6  # one per field and shape
    assert not any("138" in logged(r) or "张" in logged(r) or "先生" in logged(r) for r in lines)


async def test_aiccs_attempts_with_times_it_cannot_read_are_counted_and_never_verbatim() -> None:
    """An unreadable start is published as null; an unreadable end is what places an attempt against
    the cursor, so that attempt is left out (it would be new on every cycle), counted all the same."""
    counted: list[tuple[str, str, str]] = []
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        task_id = sim.add_task(status="RUNNING", total=3)
        attempts = [sim.call(task_id, duration=20) for _ in range(3)]
        details = sim.task(task_id).details
        details[attempts[0].Id] = msgspec.structs.replace(attempts[0], StartTime="2024/05/06 10:00")
        details[attempts[1].Id] = msgspec.structs.replace(attempts[1], EndTime="下午三点")
        details[attempts[2].Id] = msgspec.structs.replace(attempts[2], Duration=-20)
        config = make_config("nats://127.0.0.1:1", [aiccs_source(sim)])
        async with aiohttp.ClientSession() as http:
            ctx = AdapterContext(
                http=http,
                limiters=LimiterRegistry(),
                backoff_base=0.01,
                observe_unreadable=lambda *told: counted.append(told),
            )
            (account,) = config.sources
            (source,) = VENDORS[account.vendor].sources(account, ctx)
            assert isinstance(source, Source)
            observation = await source.observe(SourceState())
    by_id = {c.vendor_call_id: c for c in observation.calls}
    assert set(by_id) == {str(attempts[0].Id), str(attempts[2].Id)}
    assert by_id[str(attempts[0].Id)].started_at is None
    assert (
        by_id[str(attempts[0].Id)].ended_at
        == datetime.strptime(attempts[0].EndTime or "", "%Y-%m-%d %H:%M:%S")
        .replace(tzinfo=UTC_PLUS_8)
        .isoformat()
    )
    assert by_id[str(attempts[2].Id)].duration_seconds is None
    assert sorted(counted) == [
        ("alibaba-aiccs", account.account, "duration_seconds"),
        ("alibaba-aiccs", account.account, "ended_at"),
        ("alibaba-aiccs", account.account, "started_at"),
    ]


@pytest.mark.parametrize("duration", ["很久", "1:05", -3])
def test_a_byrobot_duration_it_cannot_read_is_null_and_counted(duration: str | int) -> None:
    told = Told("byrobot")
    call = byrobot_call(DoneCall(callInstanceId=1, duration=duration), "1", UTC_PLUS_8, None, told.values)
    assert (call.duration_seconds, call.talk_seconds) == (None, None)
    assert told.fields == ["duration_seconds"]  # one value, counted once


async def test_tencent_epoch_times_outside_2001_to_2100_are_counted_by_field(nats_server: NatsServer) -> None:
    """A call whose start, answer and ring times are no times (and whose duration is negative; the
    listing selects by ``Time``, which stays) is
    published with those fields null, never 0 or the whole call; one whose end is no time, just
    before 2001 or at 2100, is left out. Every such value is counted under its field."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}, seed=4) as sim:
        task = sim.add_task(TENCENT_APP, state=1)
        good = sim.place_call(TENCENT_APP, task, end_status=(1, "ok"))
        odd, before, after = (
            sim.place_call(TENCENT_APP, task, end_status=(1, "ok"), listed=False) for _ in range(3)
        )
        odd = msgspec.structs.replace(odd, StartTimestamp=5, AcceptTimestamp=-3, RingTimestamp=2**40)
        sim.list_cdr(TENCENT_APP, msgspec.structs.replace(odd, Duration=-5))
        sim.list_cdr(TENCENT_APP, msgspec.structs.replace(before, EndedTimestamp=999_999_999))
        sim.list_cdr(TENCENT_APP, msgspec.structs.replace(after, EndedTimestamp=4_102_444_800))
        async with running(
            make_config(nats_server.url, [tencent_source(sim, [TENCENT_APP], page_size=100)])
        ) as service:

            async def both_published() -> bool:
                calls = [p for p in await stream_payloads(nats_server.url) if b'"call-finished"' in p]
                return len(calls) == 2

            await wait_until(both_published, timeout=15)
            await polls_done(service, 2)
        reads = sim.log.count(api=CDR_API)
        metrics = service.metrics_exposition().decode()
        payloads = await stream_payloads(nats_server.url)

    assert [v for p in payloads for v in contract_violations(p)] == []
    events = [msgspec.json.decode(p, type=Event) for p in payloads]
    calls = {e.call_id: e for e in events if isinstance(e, CallFinished)}
    assert set(calls) == {good.SessionId, odd.SessionId}  # the two without an end never
    published = calls[odd.SessionId]
    assert odd.EndedTimestamp is not None
    assert published.ended_at == datetime.fromtimestamp(odd.EndedTimestamp, UTC).isoformat()
    assert (published.started_at, published.talk_seconds, published.ring_seconds) == (None, None, None)
    assert published.duration_seconds is None
    assert calls[good.SessionId].talk_seconds == 20 and calls[good.SessionId].ring_seconds == 5
    counted = {"started_at": 1, "talk_seconds": 1, "ring_seconds": 1, "duration_seconds": 1}
    counted["ended_at"] = 2 * reads  # left out, so read (and counted) again on every read (one page)
    for field, count in counted.items():
        sample = (
            f'aicc_vendor_values_unreadable_total{{account="tc-main",field="{field}",vendor="tencent-ccc"}}'
        )
        assert f"{sample} {float(count)}" in metrics
