"""Property-based fuzzing of vendor answers: never a crash, never an event from a page that did not decode."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poller.errors import BadResponse, SourceError
from poller.transport import Response
from poller.vendors.base import decode_or_bad
from poller.vendors.tencent_ccc import classify as tencent_classify

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def tencent_like() -> st.SearchStrategy[Any]:
    """Bodies near the real shape, with fields missing, extra or of the wrong type."""
    task = st.fixed_dictionaries(
        {},
        optional={
            "TaskId": st.integers() | st.text(max_size=5) | st.none(),
            "State": st.integers(-2, 9) | st.text(max_size=3) | st.none(),
            "Name": st.text(max_size=10) | st.integers(),
            "CalleeCount": st.integers() | st.none(),
            "Callers": st.lists(st.text(max_size=5)) | st.text(max_size=5),
            "Extra": json_values,
        },
    )
    inner = st.fixed_dictionaries(
        {},
        optional={
            "TotalCount": st.integers(-1, 50) | st.text(max_size=3),
            "Tasks": st.lists(task, max_size=4) | json_values,
            "RequestId": st.text(max_size=8),
            "Error": st.fixed_dictionaries({"Code": st.text(max_size=30), "Message": st.text(max_size=10)}),
        },
    )
    return st.fixed_dictionaries({"Response": inner}) | json_values


bodies = st.one_of(
    st.binary(max_size=200),
    tencent_like().map(lambda v: json.dumps(v).encode()),
    tencent_like().map(lambda v: json.dumps(v).encode()[: max(0, len(json.dumps(v)) // 2)]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 400, 404, 500, 502, 503]), body=bodies)
def test_tencent_answers_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    try:
        tencent_classify(Response(status, {}, body))
    except SourceError:
        return  # classified: the cycle fails as a whole, nothing from it is used
    # trusted: it must really be a decodable listing answer
    from poller.vendors.tencent_ccc import _decode_list

    decoded = _decode_list.decode(body)
    assert decoded.Response.Error is None
    assert status == 200


def _near(shape: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A dict with any of these fields (each may also be of a wrong type), or any JSON at all."""
    return st.fixed_dictionaries({}, optional={k: v | json_values for k, v in shape.items()})


def outboundbot_like() -> st.SearchStrategy[Any]:
    contact = _near({"PhoneNumber": st.text(max_size=12), "ContactName": st.text(max_size=5)})
    job = _near(
        {
            "JobId": st.text(max_size=6),
            "Status": st.sampled_from(["Scheduling", "Executing", "Succeeded", "Failed", "Odd"]),
            "FailureReason": st.text(max_size=8) | st.none(),
            "CallingNumbers": st.lists(st.text(max_size=6)) | st.text(max_size=12),
            "Contacts": st.lists(contact, max_size=2),
            "Summary": st.lists(_near({"Content": st.text(max_size=8)}), max_size=2),
        }
    )
    jobs = _near(
        {
            "PageNumber": st.integers(0, 3),
            "PageSize": st.integers(0, 10),
            "TotalCount": st.integers(-1, 20),
            "List": st.lists(job, max_size=3),
        }
    )
    return _near(
        {
            "Code": st.sampled_from(["OK", "Throttling.User", "InternalError", "Forbidden.NoPermission"]),
            "Success": st.booleans(),
            "HttpStatusCode": st.integers(100, 599),
            "Message": st.text(max_size=10),
            "Jobs": jobs,
        }
    )


def aiccs_like() -> st.SearchStrategy[Any]:
    record = _near(
        {
            "Id": st.integers(),
            "Status": st.sampled_from(["INIT", "RUNNING", "STOP", "FINISHED", "Odd"]),
            "TaskName": st.text(max_size=8),
            "TotalCount": st.integers(-1, 100) | st.none(),
            "CompleteCount": st.integers(-1, 100) | st.none(),
        }
    )
    data = _near(
        {"PageNo": st.integers(0, 3), "PageSize": st.integers(0, 10), "Total": st.integers(-1, 20)}
        | {"Record": st.lists(record, max_size=3)}
    )
    return _near(
        {
            "Code": st.sampled_from(["OK", "Throttling", "InternalError"]),
            "Success": st.booleans(),
            "Data": data,
        }
    )


def _bodies(shape: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        shape.map(lambda v: json.dumps(v).encode()),
        shape.map(lambda v: json.dumps(v).encode()[: len(json.dumps(v)) // 2]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 400, 403, 500, 503]), body=_bodies(outboundbot_like()))
def test_outboundbot_answers_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from poller.vendors.alibaba_common import classifier
    from poller.vendors.alibaba_outboundbot import LIST_API, job_entity, read_jobs_page

    try:
        classifier(LIST_API)(Response(status, {}, body))
        page = read_jobs_page(Response(status, {}, body))
    except SourceError:
        return  # classified: the cycle fails as a whole, nothing from it is used
    assert status == 200
    decoded = json.loads(body)
    assert decoded.get("Success") is not False and decoded.get("Code") in (None, "", "OK", "200")
    for job in page.List:  # trusted: every job normalizes, unknown statuses included
        snapshot = job_entity(job, "group")
        assert snapshot.id == job.JobId and snapshot.raw_state == job.Status


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 400, 403, 500, 503]), body=_bodies(aiccs_like()))
def test_aiccs_answers_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from poller.vendors.alibaba_aiccs import LIST_API, decode_record, read_task_raw_page, task_entity
    from poller.vendors.alibaba_common import classifier

    try:
        classifier(LIST_API)(Response(status, {}, body))
        records = [decode_record(raw) for raw in read_task_raw_page(Response(status, {}, body)).Record]
    except SourceError:
        return
    assert status == 200
    for record in records:
        snapshot = task_entity(record)
        assert snapshot.id == str(record.Id) and snapshot.raw_state == record.Status


_times = st.integers() | st.text(max_size=22) | st.sampled_from(["2026-11-22 10:00:00", "1764000000000"])
_codes = st.integers(-2, 12) | st.text(max_size=3)


def byrobot_envelope(data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _near(
        {
            "code": st.sampled_from([200, "200", 401, 403, 429, 500, "500", 400, 404]) | st.text(max_size=4),
            "data": data,
            "resultMsg": st.text(max_size=12) | st.from_regex(r"号码1[3-9]\d{9}", fullmatch=True),
        }
    )


def byrobot_task() -> st.SearchStrategy[Any]:
    counts = st.integers() | st.none()
    return _near(
        {
            "callJobId": st.integers(-5, 10**12),
            "jobName": st.text(max_size=8),
            "status": _codes,
            "totalCount": counts,
            "doneCount": counts,
            "calledCount": counts,
            "rejectedCount": counts,
            "unavailableCount": counts,
            "fromUnavailableCount": counts,
            "startDate": _times,
        }
    )


def byrobot_page(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _near(
        {
            "pageNum": st.integers(-1, 3),
            "pageSize": st.integers(-1, 100),
            "total": st.integers(-1, 10**18) | st.none(),
            "list": st.lists(item, max_size=3),
        }
    )


def byrobot_call() -> st.SearchStrategy[Any]:
    return _near(
        {
            "callInstanceId": st.integers() | st.text(max_size=8),
            "customerTelephone": st.text(max_size=13),
            "customerName": st.text(max_size=4),
            "finishStatus": _codes,
            "duration": st.integers() | st.text(max_size=8) | st.sampled_from(["27秒", "1分5秒", "2小时"]),
            "chatRound": st.integers() | st.none(),
            "startTime": _times,
            "endTime": _times,
            "callIndex": st.integers() | st.none(),
        }
    )


def byrobot_phone_log() -> st.SearchStrategy[Any]:
    line = _near({"speaker": st.text(max_size=3), "content": st.text(max_size=8), "aiUnknown": st.booleans()})
    return _near(
        {
            "phoneLog": _near({"phoneLogs": st.lists(line, max_size=3) | st.none()}),
            "sceneInstance": _near({"hangUp": _codes, "chatRound": st.integers() | st.none()}),
            "taskResult": st.lists(
                _near({"resultName": st.text(max_size=5), "resultValue": st.text(max_size=5)}), max_size=2
            ),
        }
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 200, 200, 401, 403, 404, 429, 500, 503]),
    body=_bodies(byrobot_envelope(byrobot_page(byrobot_task()))),
)
@example(status=200, body=b'{"code":"\\u00b9"}')  # found by this test: "¹".isdigit() but int() refuses it
@example(status=200, body=b'{"code":13000000000}')  # found by this test: a code shaped like a phone number
def test_byrobot_task_pages_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from poller.vendors.byrobot import TASKS_API, _decode_tasks, read_answer, task_entity

    try:
        page = read_answer(Response(status, {}, body), TASKS_API, _decode_tasks)
    except SourceError as error:
        assert error.api == TASKS_API
        assert not re.search(r"1[3-9]\d{9}", error.detail), "a phone number in an error detail"
        return
    assert status == 200
    for task in page.items or []:  # trusted: every task normalizes, odd codes and counts included
        snapshot = task_entity(7, task, None, None)
        assert snapshot.id == str(task.callJobId)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 200, 200, 403, 500]),
    body=_bodies(byrobot_envelope(byrobot_page(byrobot_call()))),
)
def test_byrobot_finished_calls_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from datetime import timedelta, timezone

    from poller.vendors.byrobot import CALLS_API, _decode_calls, call_snapshot, read_answer
    from poller.vendors.normalize import UnreadableValues

    try:
        page = read_answer(Response(status, {}, body), CALLS_API, _decode_calls)
    except SourceError:
        return
    for item in page.items or []:
        snapshot = call_snapshot(
            item, "1", timezone(timedelta(hours=8)), None, UnreadableValues("byrobot", "fuzz")
        )
        assert snapshot.call_id == str(item.callInstanceId)
        assert snapshot.duration_seconds is None or snapshot.duration_seconds >= 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 500]), body=_bodies(byrobot_envelope(byrobot_phone_log())))
def test_byrobot_phone_logs_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from poller.vendors.byrobot import PHONE_LOG_API, _decode_phone_log, call_detail, read_answer
    from schemas.vendors.byrobot import DoneCall

    try:
        info = read_answer(Response(status, {}, body), PHONE_LOG_API, _decode_phone_log)
    except SourceError:
        return
    detail = call_detail(info, DoneCall(callInstanceId=1, chatRound=3))
    assert detail.turns is None or detail.turns >= 0


def huawei_like() -> st.SearchStrategy[Any]:
    info = _near(
        {
            "id": st.text(max_size=6),
            "title": st.text(max_size=8),
            "status": st.sampled_from(["Pending", "Processing", "Completed", "Odd", ""]) | st.none(),
            "closedDate": st.text(max_size=10) | st.none(),
        }
    )
    detail = _near(
        {"taskInfo": info, "taskTrace": st.lists(json_values, max_size=2), "caseInfos": json_values}
    )
    return st.one_of(
        detail,
        _near(
            {
                "resCode": st.sampled_from(["0", 0, "CM-404001", "CM-500", "APIG.0308"])
                | st.text(max_size=6),
                "resMsg": st.text(max_size=10),
                "result": detail,
            }
        ),
        _near({"error_code": st.sampled_from(["APIG.0308", "APIG.1002"]), "error_msg": st.text(max_size=10)}),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.sampled_from([200, 200, 200, 401, 403, 404, 429, 500, 503]), body=_bodies(huawei_like()))
def test_huawei_details_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from poller.vendors.huawei_aicc import NOT_FOUND_CODE, classify_detail, normalize

    try:
        answer = classify_detail(Response(status, {}, body), frozenset({NOT_FOUND_CODE}))
    except SourceError:
        return  # classified: this id failed this cycle, nothing from it is used
    if answer.detail is None:
        assert answer.code == NOT_FOUND_CODE  # only a "no such task" may come back without a detail
        return
    assert status == 200
    snapshot = normalize("t1", answer.detail)
    assert snapshot.id == "t1"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 200, 400, 401, 500]),
    body=_bodies(
        _near(
            {
                "access_token": st.text(max_size=10) | st.none(),
                "expires_in": st.integers() | st.text(max_size=6) | st.sampled_from(["1e400", "nan", "-1"]),
                "token_type": st.text(max_size=6),
                "error": st.text(max_size=6),
            }
        )
    ),
)
def test_huawei_token_answers_are_classified_or_trusted_never_a_crash(status: int, body: bytes) -> None:
    from poller.vendors.huawei_aicc import MAX_TOKEN_LIFETIME, read_token, token_lifetime

    try:
        answer = read_token(Response(status, {}, body))
    except SourceError:
        return
    assert status == 200 and answer.access_token
    assert 0 < token_lifetime(answer) <= MAX_TOKEN_LIFETIME


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies(aiccs_like()))
def test_aiccs_raw_records_give_what_the_decoded_page_gives(body: bytes) -> None:
    """The listing decodes records one by one (SeenItems): the same snapshots, the same refusals."""
    from poller.vendors.alibaba_aiccs import LIST_API, decode_record, read_task_raw_page, task_entity
    from poller.vendors.alibaba_common import check_envelope
    from schemas.vendors.alibaba import ListTaskResponse, decoder

    def whole_page(body: bytes) -> list[Any]:
        """The page decoded as one typed answer: what the records decoded one by one must give."""
        answer: ListTaskResponse = decode_or_bad(decoder(ListTaskResponse), body, LIST_API)
        check_envelope(
            LIST_API, success=answer.Success, code=answer.Code, message=answer.Message, http_status=None
        )
        if answer.Data is None:
            raise BadResponse("answer without Data", api=LIST_API)
        return answer.Data.Record

    try:
        whole = [task_entity(record) for record in whole_page(body)]
    except SourceError:
        whole = None
    try:
        each = [task_entity(decode_record(raw)) for raw in read_task_raw_page(Response(200, {}, body)).Record]
    except SourceError:
        each = None
    assert each == whole
