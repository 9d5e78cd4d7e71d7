"""Property-based fuzzing of vendor answers: never a crash, never an event from a page that did not decode."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller.errors import SourceError
from poller.vendors.base import Response
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
