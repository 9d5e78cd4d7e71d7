"""Property-based fuzzing of vendor answers: never a crash, never an event from a page that did not decode."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.errors import SourceError
from poller.transport import Response
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
    from poller.vendors.alibaba_aiccs import LIST_API, read_task_page, task_entity
    from poller.vendors.alibaba_common import classifier

    try:
        classifier(LIST_API)(Response(status, {}, body))
        page = read_task_page(Response(status, {}, body))
    except SourceError:
        return
    assert status == 200
    for record in page.Record:
        snapshot = task_entity(record)
        assert snapshot.id == str(record.Id) and snapshot.raw_state == record.Status
