"""BYRobot: signing, every JSON example of the vendor doc, error classification, and end to end.

The end-to-end tests run the poller against the simulator over loopback HTTP and a real nats-server,
script task status changes and finished calls, and check the exact events in the stream. "None
doubled" is checked where it matters: the publisher's own count of duplicates JetStream dropped
stays 0, so the adapter never re-emitted a call (JetStream de-duplication would hide that).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from base64 import b64encode
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from poller.errors import AuthFailed, BadResponse, ClientError, ServerError, SourceError, Throttled
from poller.pipeline.privacy import mask_phone
from poller.runtime.service import Service
from poller.simulators.base import Fault
from poller.simulators.byrobot import ByRobotSimulator
from poller.tools.natsserver import NatsServer
from poller.transport import Response
from poller.vendors.byrobot import (
    CALLS_API,
    PATH_PREFIX,
    STATES,
    TASKS_API,
    auth_headers,
    call_detail,
    call_snapshot,
    duration_seconds,
    read_answer,
    rfc1123,
    sign,
    task_entity,
    vendor_time,
)
from poller.vendors.normalize import UnreadableValues
from schemas import (
    CallDetail,
    CallFinished,
    CallOutcome,
    DegradeReason,
    Event,
    SourceDegraded,
    SourceRecovered,
    TaskAppeared,
    TaskProgress,
    TaskState,
    TaskStatusChanged,
)
from schemas.vendors.byrobot import (
    DoneCall,
    DoneCallsQuery,
    Envelope,
    Page,
    PhoneLogInfo,
    TaskDetail,
    TaskInfo,
)
from tests.helpers import make_config, polls_done, running, stream_events, wait_until

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "byrobot"
APP_KEY = "byrobot-e2e-appkey"
APP_SECRET = "byrobot-e2e-secret-never-logged"
COMPANY = 7001
CST = "+08:00"
UTC_PLUS_8 = timezone(timedelta(hours=8))
#: where the unit tests' adapters report values they cannot read: logged, counted nowhere
UNCOUNTED = UnreadableValues("byrobot", "test")


# -- the doc's JSON examples ----------------------------------------------------------------------
def strip_json_comments(text: str) -> str:
    """Drop ``// …`` to the end of the line, except inside strings (the URLs hold ``//``)."""
    out: list[str] = []
    i, in_string = 0, False
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\":
                out.append(text[i + 1])
                i += 2
                continue
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def fixture(name: str) -> bytes:
    return strip_json_comments((FIXTURES / f"{name}.jsonc").read_text()).encode()


#: The phoneLogInfo example closes the last ``phoneLogs`` item and goes straight on to
#: ``"luyinOssUrl"``: the ``],`` that ends the array is missing. This is the whole repair.
PHONE_LOG_BROKEN = '                }\n          "luyinOssUrl"'
PHONE_LOG_REPAIRED = '                }\n          ],\n          "luyinOssUrl"'


def repaired_phone_log() -> bytes:
    text = strip_json_comments((FIXTURES / "phoneLogInfo.response.jsonc").read_text())
    assert text.count(PHONE_LOG_BROKEN) == 1
    return text.replace(PHONE_LOG_BROKEN, PHONE_LOG_REPAIRED).encode()


def ok(body: bytes) -> Response:
    return Response(200, {"Content-Type": "application/json"}, body)


def test_comment_stripper_keeps_urls_and_drops_comments() -> None:
    text = '{"a": "https://x//y", // note\n "b": "say \\"//\\"" // more\n}'
    assert msgspec.json.decode(strip_json_comments(text)) == {"a": "https://x//y", "b": 'say "//"'}


def test_seed_get_tasks_example_decodes_with_null_counts() -> None:
    page = read_answer(ok(fixture("getTasks.response")), TASKS_API, msgspec.json.Decoder(Page[TaskInfo]))
    assert (page.pageNum, page.total, page.pages) == (2, 46, 23)
    assert page.items is not None
    assert [t.callJobId for t in page.items] == [66, 64]
    assert all(t.totalCount is None and t.doneCount is None for t in page.items)
    snap = task_entity(1, page.items[0], None, None)
    assert (snap.state, snap.raw_state, snap.completed, snap.total) == (TaskState.COMPLETED, "2", None, None)


def test_seed_get_task_detail_example_decodes() -> None:
    detail = read_answer(
        ok(fixture("getTaskDetail.response")), "getTaskDetail", msgspec.json.Decoder(TaskDetail)
    )
    assert (detail.callJobId, detail.totalCount, detail.doneCount, detail.fromUnavailableCount) == (
        19,
        2,
        2,
        2,
    )
    assert detail.extraStat is not None and len(detail.extraStat["客户关注点"]) == 7
    assert detail.resultDefs is not None and detail.resultDefs[0].values == ["成功", "不成功"]
    assert detail.callPhones is not None and detail.callPhones[1].phoneName == "sim2"
    listed = TaskInfo(callJobId=19, status=2)  # the listing's nulls: the detail's counts win
    snap = task_entity(1, listed, detail, None)
    assert (snap.completed, snap.total) == (2, 2)
    assert snap.by_state == {"answered": 0, "rejected": 0, "no_answer": 0, "caller_number_unavailable": 2}


def test_seed_query_done_task_phones_request_example_decodes() -> None:
    query = msgspec.json.decode(fixture("queryDoneTaskPhones.request"), type=DoneCallsQuery)
    assert (query.callJobId, query.index, query.pageNum, query.pageSize, query.finishStatus) == (
        62,
        -1,
        1,
        10,
        1,
    )
    assert query.resultQueryList is not None and query.resultQueryList[0].value == "A级(较强)"


def test_seed_query_done_task_phones_response_example_decodes() -> None:
    page = read_answer(
        ok(fixture("queryDoneTaskPhones.response")), CALLS_API, msgspec.json.Decoder(Page[DoneCall])
    )
    assert page.items is not None
    first, second = page.items
    assert (first.callIndex, second.callIndex) == (10, None)  # the second item has no callIndex
    assert (first.duration, second.duration) == ("27秒", "11秒")
    snap = call_snapshot(first, "62", UTC_PLUS_8, None, UNCOUNTED)
    assert snap.call_id == "493" and snap.outcome is CallOutcome.ANSWERED and snap.raw_outcome == "0"
    assert snap.duration_seconds == 27 and snap.failure_reason is None
    assert (snap.started_at, snap.ended_at) == ("2017-10-25T11:32:54" + CST, "2017-10-25T11:33:22" + CST)
    assert snap.callee_number == "1008" and snap.callee_name == "测试02"  # raw here; privacy applies later


def test_seed_phone_log_info_example_decodes_after_the_one_repair() -> None:
    raw = strip_json_comments((FIXTURES / "phoneLogInfo.response.jsonc").read_text()).encode()
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(raw)  # as published, it is not JSON
    info = read_answer(ok(repaired_phone_log()), "phoneLogInfo", msgspec.json.Decoder(PhoneLogInfo))
    assert info.phoneLog is not None and info.phoneLog.phoneLogs is not None
    assert [line.speaker for line in info.phoneLog.phoneLogs] == ["AI", "ME", "ME"]
    assert info.phoneLog.phoneLogs[0].aiUnknown is False
    assert info.sceneInstance is not None and info.sceneInstance.duration == 87
    assert info.sceneInstance.hangUp == 0 and info.sceneInstance.chatRound == 18
    detail = call_detail(info, DoneCall(callInstanceId=540))
    assert detail == CallDetail(
        turns=3, hung_up_by="ai", results={"预约时间": "2018-01-25 08:00", "客户意向等级": "A级(较强)"}
    )


def test_value_shapes_from_the_field_tables_decode() -> None:
    """The tables type aiUnknown as Integer, status/finishStatus as String; startDate is "object"."""
    item = msgspec.json.decode(
        b'{"callInstanceId": "77", "status": "2", "finishStatus": "10", "duration": 61,'
        b' "endTime": "1508902402000", "callIndex": 3}',
        type=DoneCall,
    )
    snap = call_snapshot(item, "9", UTC_PLUS_8, None, UNCOUNTED)
    assert (snap.outcome, snap.raw_outcome, snap.failure_reason) == (CallOutcome.CALL_LOSS, "10", "呼损")
    assert snap.duration_seconds == 61 and snap.ended_at == "2017-10-25T11:33:22" + CST
    info = msgspec.json.decode(
        b'{"phoneLog": {"phoneLogs": [{"aiUnknown": 1}, {"aiUnknown": 0}]},'
        b' "sceneInstance": {"hangUp": "1"}}',
        type=PhoneLogInfo,
    )
    assert info.phoneLog is not None and info.phoneLog.phoneLogs is not None
    assert [x.aiUnknown for x in info.phoneLog.phoneLogs] == [1, 0]
    assert call_detail(info, item).hung_up_by == "callee"
    task = msgspec.json.decode(b'{"callJobId": 5, "status": "4", "startDate": 1508860800000}', type=TaskInfo)
    assert task_entity(1, task, None, None).state is TaskState.PAUSED
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"callInstanceId": 1, "duration": 2.5}', type=DoneCall)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(27, 27), ("27秒", 27), ("27", 27), ("1分5秒", 65), ("0秒", 0), (None, None), ("about a minute", None)],
)
def test_duration_shapes(value: int | str | None, seconds: int | None) -> None:
    assert duration_seconds(value) == seconds


def test_times_are_china_wall_clock_or_epoch_millis() -> None:
    assert vendor_time("2018-01-24 20:51:53", UTC_PLUS_8) == "2018-01-24T20:51:53" + CST
    assert vendor_time(1516798313000, UTC_PLUS_8) == vendor_time("1516798313000", UTC_PLUS_8)
    assert vendor_time(1516798313000, UTC_PLUS_8) == "2018-01-24T20:51:53" + CST
    assert vendor_time("", UTC_PLUS_8) is None and vendor_time(None, UTC_PLUS_8) is None


def test_unknown_codes_map_to_unknown_and_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="poller.vendors.normalize")
    for _ in range(3):
        assert STATES.normalize("93") is TaskState.UNKNOWN
        snap = call_snapshot(DoneCall(callInstanceId=1, finishStatus=93), "1", UTC_PLUS_8, None, UNCOUNTED)
        assert snap.outcome is CallOutcome.UNKNOWN and snap.raw_outcome == "93"
    assert len([r for r in caplog.records if getattr(r, "raw_value", None) == "93"]) == 2  # one per field


# -- error classification ---------------------------------------------------------------------------
def envelope(code: int | str, message: str = "x", data: Any = None) -> bytes:
    return msgspec.json.encode(Envelope[Any](code=code, data=data, resultMsg=message))


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, envelope(401, "签名校验失败"), AuthFailed),
        (401, envelope(401, "签名校验失败"), AuthFailed),
        (200, envelope(403, "无权访问该公司"), AuthFailed),
        (403, b"<html>forbidden</html>", AuthFailed),
        (200, envelope(429, "请求过于频繁"), Throttled),
        (429, envelope(429, "请求过于频繁"), Throttled),
        # a bare HTTP 429 is throttling for every vendor: read by the transport (tests/transport)
        (200, envelope(500, "系统内部错误"), ServerError),
        (200, envelope("500", "系统内部错误"), ServerError),
        (500, envelope(500, "系统内部错误"), ServerError),
        (502, b"<html>bad gateway</html>", ServerError),
        (200, envelope(400, "参数错误"), ClientError),
        (404, b"not found", ClientError),
        (200, b"<html><body>502 Bad Gateway</body></html>", BadResponse),
        (
            200,
            envelope(200, "操作成功", {"pageNum": 1, "total": 1, "list": [{"callJobId": 1}]})[:40],
            BadResponse,
        ),
        (200, envelope(200, "操作成功"), BadResponse),  # success without data
        (200, envelope(200, "操作成功", {"total": 1, "list": {"drift": []}}), BadResponse),
        (401, envelope(200, "操作成功", {"total": 0, "list": []}), BadResponse),
    ],
)
def test_answers_are_classified(status: int, body: bytes, error: type[SourceError]) -> None:
    with pytest.raises(error) as caught:
        read_answer(Response(status, {}, body), TASKS_API, msgspec.json.Decoder(Page[TaskInfo]))
    assert type(caught.value) is error and caught.value.api == TASKS_API


def test_error_details_do_not_quote_phone_numbers() -> None:
    body = envelope(400, "号码13812345678格式错误")
    with pytest.raises(ClientError) as caught:
        read_answer(ok(body), CALLS_API, msgspec.json.Decoder(Page[DoneCall]))
    assert "13812345678" not in str(caught.value) and "code 400" in str(caught.value)


# -- signing ------------------------------------------------------------------------------------------
def expected_sign(app_key: str, app_secret: str, date: str) -> str:
    """The doc's formula, written out independently of the adapter."""
    mac = hmac.new(app_secret.encode(), (app_key + "\n" + date).encode(), hashlib.sha1)
    return b64encode(mac.digest()).decode()


def test_sign_and_datetime_header() -> None:
    date = "Tue, 24 Oct 2017 08:00:00 GMT"
    assert sign("key", "secret", date) == expected_sign("key", "secret", date)
    now = datetime(2024, 3, 5, 1, 2, 3, tzinfo=UTC)
    headers = auth_headers("key", "secret", now)
    assert headers["datetime"] == "Tue, 05 Mar 2024 01:02:03 GMT"
    assert headers["sign"] == expected_sign("key", "secret", headers["datetime"])
    assert headers["appkey"] == "key"
    # real UTC, not local time minus 8 h as the python demo computes it
    assert rfc1123(now.astimezone(UTC_PLUS_8)) == headers["datetime"]


async def get_tasks(sim: ByRobotSimulator, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(sim.url + PATH_PREFIX + TASKS_API, params={"companyId": str(COMPANY)}, headers=headers) as r,
    ):
        return r.status, msgspec.json.decode(await r.read())


def headers_at(moment: datetime, secret: str = APP_SECRET) -> dict[str, str]:
    return auth_headers(APP_KEY, secret, moment)


async def test_simulator_verifies_signature_skew_and_secret() -> None:
    sim = ByRobotSimulator(credentials={APP_KEY: APP_SECRET})
    async with sim:
        sim.add_company(COMPANY, APP_KEY)
        sim.add_task(COMPANY, phones=1)
        now = datetime.now(UTC)
        status, body = await get_tasks(sim, headers_at(now))
        assert (status, body["code"], body["data"]["total"]) == (200, 200, 1)
        status, body = await get_tasks(sim, headers_at(now, "wrong-secret"))
        assert (status, body["code"], body["data"], body["errorStackTrace"]) == (200, 401, None, None)
        assert body["resultMsg"] == "签名校验失败"
        status, body = await get_tasks(sim, headers_at(now - timedelta(minutes=20)))
        assert (body["code"], body["resultMsg"]) == (401, "datetime 已过期")
        status, body = await get_tasks(sim, headers_at(now + timedelta(minutes=10)))
        assert body["code"] == 200  # within the default 15 minutes
        stale = headers_at(now)
        stale["sign"] = expected_sign(APP_KEY, APP_SECRET, rfc1123(now - timedelta(seconds=5)))
        status, body = await get_tasks(sim, stale)  # a signature of another datetime
        assert body["code"] == 401
        missing = {k: v for k, v in headers_at(now).items() if k != "sign"}
        status, body = await get_tasks(sim, missing)
        assert body["code"] == 401
        assert sim.log.count("auth_failed") == 4

        sim.max_skew = 60
        sim.errors_as_http_status = True
        status, body = await get_tasks(sim, headers_at(now - timedelta(minutes=2)))
        assert (status, body["code"]) == (401, 401)

        # Ruby's Base64.encode64 appends "\n" to the signature. No HTTP stack carries a bare LF inside
        # a header value (aiohttp's parser rejects it before any handler runs), so the tolerance is
        # checked where the simulator applies it.
        date = rfc1123(now)
        good = expected_sign(APP_KEY, APP_SECRET, date)
        assert sim.check_auth(APP_KEY, date, good + "\n") is None
        assert sim.check_auth(APP_KEY, date, good) is None
        assert sim.check_auth(APP_KEY, date, good[:-2] + "\n") == "签名校验失败"
        assert sim.check_auth("nobody", date, good) == "appkey 不存在"


# -- end to end ---------------------------------------------------------------------------------------
def byrobot_source(sim: ByRobotSimulator, **extra: Any) -> dict[str, Any]:
    return {
        "vendor": "byrobot",
        "account": "by-main",
        "company_id": COMPANY,
        "app_key": APP_KEY,
        "app_secret": APP_SECRET,
        "endpoint": sim.url,
        "poll_interval": 0.05,
        "page_size": 2,
        "call_page_size": 2,
        "detail_interval": 3600.0,
        "retries": 1,
        "failure_backoff": 0.2,
        "rate_limits": {
            "getTasks": 200,
            "getTaskDetail": 200,
            "queryDoneTaskPhones": 200,
            "phoneLogInfo": 200,
        },
        **extra,
    }


def simulator(**options: Any) -> ByRobotSimulator:
    sim = ByRobotSimulator(credentials={APP_KEY: APP_SECRET}, seed=3, rate_limit=200, **options)
    sim.add_company(COMPANY, APP_KEY)
    return sim


def finished_calls(sim: ByRobotSimulator) -> dict[str, tuple[int, int]]:
    """call id → (task id, finishStatus) of every finished call in the simulator."""
    return {
        str(call.instance_id): (task.task_id, call.finish_status)
        for task in sim.tasks.values()
        for call in task.calls
        if call.status == 2 and call.finish_status is not None
    }


def calls_of(events: list[Event]) -> list[CallFinished]:
    return [e for e in events if isinstance(e, CallFinished)]


Step = tuple[dict[int, int], dict[int, tuple[int, ...]]]


def apply(sim: ByRobotSimulator, step: Step) -> None:
    statuses, outcomes = step
    for task_id, finish in outcomes.items():
        sim.finish_calls(task_id, finish)
    for task_id, status in statuses.items():
        sim.set_status(task_id, status)


def no_duplicates(service: Service) -> bool:
    assert service.publisher is not None
    return service.publisher.stats.duplicates == 0


async def test_scripted_tasks_and_calls_give_exactly_those_events(nats_server: NatsServer) -> None:
    sim = simulator()
    async with sim:
        t1 = sim.add_task(COMPANY, phones=5, status=0)
        t2 = sim.add_task(COMPANY, phones=4, status=1)
        t3 = sim.add_task(COMPANY, phones=2, status=2, finished=(0, 4))
        config = make_config(nats_server.url, [byrobot_source(sim)])
        script: list[Step] = [
            ({t1: 1}, {t1: (0, 2)}),
            ({}, {t2: (1, 6, 10)}),
            ({t1: 4}, {t1: (5,)}),  # a call that was in flight when the task was paused
            ({t1: 1}, {t1: (9, 0)}),
            ({t1: 6}, {}),
            ({}, {t2: (3,)}),
            ({t3: 1}, {}),  # the vendor restarts a finished task
            ({t3: 2}, {}),
        ]
        async with running(config) as service:
            await polls_done(service, 2)
            for step in script:
                apply(sim, step)
                await polls_done(service, 2)
            assert no_duplicates(service)
        events = await stream_events(nats_server.url)
        assert sim.log.count("throttled") == 0

        # restart: the committed state and cursors say everything is published
        sim.last_index.clear()
        async with running(config) as service:
            await polls_done(service, 3)
            assert service.publisher is not None and service.publisher.stats.published == 0
        assert await stream_events(nats_server.url) == events
        assert sim.last_index[t2] == 3  # t2 is still running: asked from its committed cursor

    kinds = Counter(type(e).__name__ for e in events)
    assert kinds == {"TaskAppeared": 3, "TaskStatusChanged": 6, "TaskProgress": 5, "CallFinished": 11}
    appeared = {e.entity_id: e for e in events if isinstance(e, TaskAppeared)}
    assert {k: (e.current.raw, e.completed, e.total) for k, e in appeared.items()} == {
        str(t1): ("0", 0, 5),
        str(t2): ("1", 0, 4),
        str(t3): ("2", 2, 2),
    }
    changes = [
        (e.entity_id, e.previous.raw, e.current.raw) for e in events if isinstance(e, TaskStatusChanged)
    ]
    assert changes == [
        (str(t1), "0", "1"),
        (str(t1), "1", "4"),
        (str(t1), "4", "1"),
        (str(t1), "1", "6"),
        (str(t3), "2", "1"),
        (str(t3), "1", "2"),
    ]
    states = [e.current.state for e in events if isinstance(e, TaskStatusChanged)]
    assert states[1:4] == [TaskState.PAUSED, TaskState.RUNNING, TaskState.CANCELLED]
    progress = [
        (e.entity_id, e.previous_completed, e.completed, e.total)
        for e in events
        if isinstance(e, TaskProgress)
    ]
    assert progress == [
        (str(t1), 0, 2, 5),
        (str(t2), 0, 3, 4),
        (str(t1), 2, 3, 5),
        (str(t1), 3, 5, 5),
        (str(t2), 3, 4, 4),
    ]

    calls = calls_of(events)
    expected = finished_calls(sim)
    assert sorted(c.call_id for c in calls) == sorted(expected)  # each finished call exactly once
    for call in calls:
        task_id, finish = expected[call.call_id]
        sim_call = sim.calls[int(call.call_id)][1]
        assert call.task_id == str(task_id) and call.raw_outcome == str(finish)
        assert call.duration_seconds == sim_call.duration
        assert sim_call.ended is not None and call.ended_at == sim_call.ended.isoformat()
        # personal data is masked by default
        assert call.callee_number == mask_phone(sim_call.phone) != sim_call.phone
        assert call.callee_name is not None and call.callee_name[0] == sim_call.name[0]
        assert call.callee_name != sim_call.name and call.detail is None
    outcomes = {c.call_id: c.outcome for c in calls}
    assert Counter(outcomes.values()) == {
        CallOutcome.ANSWERED: 3,
        CallOutcome.INVALID_NUMBER: 1,
        CallOutcome.NO_ANSWER: 1,
        CallOutcome.REJECTED: 1,
        CallOutcome.BUSY: 1,
        CallOutcome.CALL_LOSS: 1,
        CallOutcome.POWERED_OFF: 1,
        CallOutcome.CALLER_IN_ARREARS: 1,
        CallOutcome.CALLER_NUMBER_UNAVAILABLE: 1,
    }
    # within one task, calls come out in the order they finished
    t2_calls = [int(c.call_id) for c in calls if c.task_id == str(t2)]
    assert t2_calls == sorted(t2_calls)
    assert len({e.event_id for e in events}) == len(events)


@pytest.mark.parametrize(
    "options",
    [
        {"honor_index": False, "string_codes": True, "counts_in_list": True},
        {"honor_index": False, "send_call_index": False},
    ],
    ids=["cursor-ignored", "cursor-ignored-no-callIndex"],
)
async def test_server_ignoring_the_cursor_still_gives_each_call_once(
    nats_server: NatsServer, options: dict[str, Any]
) -> None:
    sim = simulator(**options)
    async with sim:
        task = sim.add_task(COMPANY, phones=8, status=1, finished=(0,))
        other = sim.add_task(COMPANY, phones=2, status=1)
        config = make_config(nats_server.url, [byrobot_source(sim)])
        script: list[Step] = [
            ({}, {task: (1, 2)}),
            ({}, {task: (3, 4, 5), other: (0,)}),
            ({}, {task: (6,)}),
            ({task: 2, other: 2}, {task: (0,), other: (8,)}),
        ]
        async with running(config) as service:
            await polls_done(service, 2)
            for step in script:
                apply(sim, step)
                await polls_done(service, 2)
            assert no_duplicates(service)
        events = await stream_events(nats_server.url)
        async with running(config) as service:
            await polls_done(service, 3)
            assert service.publisher is not None and service.publisher.stats.published == 0

    calls = calls_of(events)
    expected = finished_calls(sim)
    assert len(expected) == 10
    assert sorted(c.call_id for c in calls) == sorted(expected)
    assert all(c.raw_outcome == str(expected[c.call_id][1]) for c in calls)
    progress = [e for e in events if isinstance(e, TaskProgress) and e.entity_id == str(task)]
    assert [e.completed for e in progress] == [3, 6, 7, 8]


#: what a hostile server numbers one call of a task: far ahead of the task (a cursor moved there
#: skips every later call), beyond what a JSON number holds exactly, an earlier call's, below zero
HOSTILE_INDEXES = {"far ahead": 10**15, "beyond 2^53": 2**62, "repeated": 0, "negative": -7}


@pytest.mark.parametrize(
    ("honor_index", "hostile", "unreadable"),
    [
        # a server that files calls by their number never lists one numbered below the first cursor
        (True, ("far ahead", "beyond 2^53", "repeated"), 4),
        (False, tuple(HOSTILE_INDEXES), 5),
    ],
    ids=["cursor", "cursor-ignored"],
)
async def test_call_indexes_a_task_cannot_have_never_move_the_cursor(
    nats_server: NatsServer, honor_index: bool, hostile: tuple[str, ...], unreadable: int
) -> None:
    """Each task's third call gets a hostile ``callIndex``: every call is still published once (none
    skipped behind a jumped cursor), each value counted as unreadable."""
    sim = simulator(honor_index=honor_index)
    async with sim:
        tasks = {why: sim.add_task(COMPANY, phones=5, status=1, finished=(0, 1)) for why in hostile}
        async with running(make_config(nats_server.url, [byrobot_source(sim)])) as service:
            await polls_done(service, 2)
            for why, task in tasks.items():
                (odd,) = sim.finish_calls(task, (2,))
                sim.renumber(odd, HOSTILE_INDEXES[why])
            await polls_done(service, 2)
            for task in tasks.values():
                sim.finish_calls(task, (4, 0))
            await polls_done(service, 2)
            for task in tasks.values():
                sim.set_status(task, 2)

            async def all_published() -> bool:
                return len(calls_of(await stream_events(nats_server.url))) >= len(finished_calls(sim))

            await wait_until(all_published)
            await polls_done(service, 2)
            assert service.publisher is not None
            # the repeated number is shared with a published call, which cannot be told from the
            # other: that one is published again, and JetStream drops it by its event id
            assert service.publisher.stats.duplicates == 1
            metrics = service.metrics_exposition().decode()
        events = await stream_events(nats_server.url)

    calls = calls_of(events)
    expected = finished_calls(sim)
    assert len(expected) == 5 * len(hostile)
    assert sorted(c.call_id for c in calls) == sorted(expected)  # none lost, none doubled
    assert all((c.task_id, c.raw_outcome) == tuple(map(str, expected[c.call_id])) for c in calls)
    # one value each, read once: the task is counted by its calls' end-time order from then on
    # (the repeated number counts for both calls that share it)
    sample = 'aicc_vendor_values_unreadable_total{account="by-main",field="callIndex",vendor="byrobot"}'
    assert f"{sample} {float(unreadable)}" in metrics


async def test_enrichment_fills_call_detail_and_a_failing_task_waits_alone(nats_server: NatsServer) -> None:
    sim = simulator(string_codes=True)
    async with sim:
        task = sim.add_task(COMPANY, phones=3, status=1)
        other = sim.add_task(COMPANY, phones=2, status=1)
        config = make_config(nats_server.url, [byrobot_source(sim, enrich_calls=True)])
        async with running(config) as service:
            await polls_done(service, 1)
            # every phoneLogInfo attempt of one cycle fails (2 attempts per call): that task's calls
            # wait for the next cycle, while the other task's change goes out at once
            sim.inject(Fault.SERVER_ERROR, remaining=6, api="phoneLogInfo")
            sim.finish_calls(task, (0, 1, 0))
            sim.set_status(other, 5)
            await wait_until(lambda: sim.log.count("ok", api="phoneLogInfo") >= 3)
            await polls_done(service, 2)
            assert no_duplicates(service)
        events = await stream_events(nats_server.url)

    assert sim.log.count("server_error", api="phoneLogInfo") == 6
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds == {"TaskAppeared": 2, "TaskStatusChanged": 1, "TaskProgress": 1, "CallFinished": 3}
    first_call = next(i for i, e in enumerate(events) if isinstance(e, CallFinished))
    paused = next(i for i, e in enumerate(events) if isinstance(e, TaskStatusChanged))
    change = events[paused]
    assert paused < first_call
    assert isinstance(change, TaskStatusChanged) and change.current.state is TaskState.PAUSED_BY_SYSTEM
    calls = calls_of(events)
    for call in calls:
        sim_call = sim.calls[int(call.call_id)][1]
        assert call.detail is not None
        assert call.detail.turns == len(sim_call.lines)
        assert call.detail.results == sim_call.results
        assert call.detail.hung_up_by == ("ai", "callee")[sim_call.hang_up]
    answered = [c for c in calls if c.outcome is CallOutcome.ANSWERED]
    assert len(answered) == 2 and all(c.detail and c.detail.turns and c.detail.results for c in answered)
    rejected = next(c for c in calls if c.outcome is CallOutcome.REJECTED)
    assert rejected.detail == CallDetail(turns=0, hung_up_by="ai", results={})
    assert rejected.failure_reason == "拒接"


async def test_rejected_credentials_degrade_the_source_and_recover(nats_server: NatsServer) -> None:
    sim = simulator(errors_as_http_status=True)
    async with sim:
        sim.add_task(COMPANY, phones=1, status=0)
        sim.credentials[APP_KEY] = "rotated-at-the-vendor"
        config = make_config(nats_server.url, [byrobot_source(sim)])
        async with running(config) as service:
            await wait_until(lambda: sim.log.count("auth_failed") >= 2)
            sim.credentials[APP_KEY] = APP_SECRET
            await polls_done(service, 1)
        events = await stream_events(nats_server.url)

    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SourceDegraded", "SourceRecovered", "TaskAppeared"]
    degraded = events[0]
    assert isinstance(degraded, SourceDegraded) and isinstance(events[1], SourceRecovered)
    assert degraded.reason is DegradeReason.AUTH_FAILED and degraded.api == TASKS_API
    assert APP_SECRET not in degraded.detail and re.search(r"code 401", degraded.detail)
