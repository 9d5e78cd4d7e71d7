"""Our TC3 signer and Tencent simulator against code we did not write: the official Python SDK."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.ccc.v20200210 import ccc_client, models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.common.sign import Sign

from poller.simulators.base import max_in_window
from poller.simulators.tencent_ccc import TencentCccSimulator
from poller.vendors.tencent_ccc import tc3_signature, tc3_string_to_sign

SECRET_ID = "AKIDfidelity"
SECRET_KEY = "fidelity-key"

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    secret=text,
    payload=st.binary(max_size=200),
    host=st.from_regex(r"[a-z0-9.-]{1,30}(:[0-9]{1,5})?", fullmatch=True),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8"]),
)
def test_tc3_signature_equals_the_official_sdk(
    secret: str, payload: bytes, host: str, timestamp: int, content_type: str
) -> None:
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    to_sign = tc3_string_to_sign(
        host=host, content_type=content_type, payload=payload, timestamp=timestamp, service="ccc"
    )
    assert tc3_signature(secret, date, "ccc", to_sign) == Sign.sign_tc3(secret, date, "ccc", to_sign)


def _client(sim: TencentCccSimulator, secret_key: str) -> ccc_client.CccClient:
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=sim.endpoint))
    return ccc_client.CccClient(credential.Credential(SECRET_ID, secret_key), "", profile)


def _list(
    client: ccc_client.CccClient, app: int, page: int, size: int
) -> models.DescribeAutoCalloutTasksResponse:
    request = models.DescribeAutoCalloutTasksRequest()
    request.from_json_string(json.dumps({"SdkAppId": app, "PageSize": size, "PageNumber": page}))
    return client.DescribeAutoCalloutTasks(request)


async def test_official_sdk_lists_tasks_from_the_simulator() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        ids = [sim.add_task(1400000777, name=f"任务 {i}", state=i % 6) for i in range(5)]
        client = _client(sim, SECRET_KEY)
        first = await asyncio.to_thread(_list, client, 1400000777, 0, 3)
        second = await asyncio.to_thread(_list, client, 1400000777, 1, 3)
    assert first.TotalCount == 5
    got = [(t.TaskId, t.State, t.Name) for t in first.Tasks + second.Tasks]
    assert got == [(task_id, i % 6, f"任务 {i}") for i, task_id in enumerate(ids)]


async def test_a_second_port_serves_the_same_simulator_and_the_log_says_which_port() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        sim.add_task(1400000777)
        other = await sim.listen_also()
        profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=f"{sim.host}:{other}"))
        client = ccc_client.CccClient(credential.Credential(SECRET_ID, SECRET_KEY), "", profile)
        via_other = await asyncio.to_thread(_list, client, 1400000777, 0, 10)
        via_first = await asyncio.to_thread(_list, _client(sim, SECRET_KEY), 1400000777, 0, 10)
    assert via_other.TotalCount == via_first.TotalCount == 1
    assert other != sim.port
    assert [(r.via, r.outcome) for r in sim.log.records] == [(other, "ok"), (sim.port, "ok")]


async def test_official_sdk_gets_the_vendors_signature_error_for_a_wrong_secret() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        sim.add_task(1400000777)
        client = _client(sim, "not-the-secret")
        with pytest.raises(TencentCloudSDKException) as caught:
            await asyncio.to_thread(_list, client, 1400000777, 0, 10)
    assert caught.value.get_code() == "AuthFailure.SignatureFailure"


async def test_official_sdk_sees_throttling_above_20_per_second() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        sim.add_task(1400000777)
        client = _client(sim, SECRET_KEY)

        def burst() -> list[str]:
            codes = []
            for _ in range(25):
                try:
                    _list(client, 1400000777, 0, 10)
                    codes.append("ok")
                except TencentCloudSDKException as exc:
                    codes.append(exc.get_code())
            return codes

        codes = await asyncio.to_thread(burst)
        accepted = [r.at for r in sim.log.records if r.outcome == "ok"]
        span = max(r.at for r in sim.log.records) - min(r.at for r in sim.log.records)
    assert set(codes) <= {"ok", "RequestLimitExceeded"}
    assert max_in_window(accepted) <= 20
    if span < 1.0:  # the burst fit in one window: exactly the limit got through
        assert codes.count("ok") == 20 and codes.count("RequestLimitExceeded") == 5


SEED_EXAMPLE = b"""{
"Response": {
"TotalCount": 1,
"Tasks": [
{
"TaskId": 3241,
"IvrId": 1,
"CalleeCount": 1,
"Name": "foobar",
"NotBefore": 0,
"NotAfter": 0,
"State": 1,
"Callers": [
"123456"
]
}
],
"RequestId": "123456"
}
}"""


def test_the_seed_documents_example_answer_decodes_verbatim() -> None:
    """Seed 003's output example, copied as published."""
    from poller.transport import Response
    from poller.vendors.tencent_ccc import classify, normalize
    from schemas import TaskState

    envelope = classify(Response(200, {}, SEED_EXAMPLE))
    assert envelope.Response.TotalCount == 1 and envelope.Response.Tasks is not None
    (task,) = envelope.Response.Tasks
    entity = normalize(task, 1)
    assert (entity.id, entity.state, entity.raw_state, entity.total) == ("3241", TaskState.RUNNING, "1", 1)


async def test_official_sdk_reads_a_tasks_callees_and_their_call_records() -> None:
    """DescribeAutoCalloutTask and DescribeTelCdr as the SDK models them: sessions join to records."""
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        task_id = sim.add_task(1400000777, state=1, callees=3)
        placed = [sim.place_call(1400000777, task_id, end_status=(1, "ok"), talk=30) for _ in range(2)]
        client = _client(sim, SECRET_KEY)

        def read() -> tuple[models.DescribeAutoCalloutTaskResponse, list[models.TelCdrInfo], int]:
            detail_request = models.DescribeAutoCalloutTaskRequest()
            detail_request.from_json_string(json.dumps({"SdkAppId": 1400000777, "TaskId": task_id}))
            detail = client.DescribeAutoCalloutTask(detail_request)
            records: list[models.TelCdrInfo] = []
            total = 0
            for page in (0, 1):
                cdr_request = models.DescribeTelCdrRequest()
                window = {"StartTimeStamp": placed[0].Time - 60, "EndTimeStamp": placed[-1].Time + 60}
                cdr_request.from_json_string(
                    json.dumps({"SdkAppId": 1400000777, "PageSize": 1, "PageNumber": page, **window})
                )
                answer = client.DescribeTelCdr(cdr_request)
                total = answer.TotalCount
                records.extend(answer.TelCdrList)
            return detail, records, total

        detail, records, total = await asyncio.to_thread(read)
    sessions = [s for callee in detail.Callees for s in callee.Sessions]
    assert detail.State == 1 and len(detail.Callees) == 3
    assert sessions == [c.SessionId for c in placed]
    assert total == 2 and sorted(r.SessionId for r in records) == sorted(sessions)
    assert {(r.EndStatus, r.EndStatusString, r.Duration) for r in records} == {(1, "ok", 30)}
    assert all(r.EndedTimestamp - r.AcceptTimestamp == 30 for r in records)


async def test_official_sdk_gets_the_vendors_error_for_a_window_over_90_days() -> None:
    async with TencentCccSimulator(credentials={SECRET_ID: SECRET_KEY}) as sim:
        sim.add_app(1400000777)
        client = _client(sim, SECRET_KEY)
        now = int(datetime.now(UTC).timestamp())

        def read() -> None:
            request = models.DescribeTelCdrRequest()
            window = {"StartTimeStamp": now - 91 * 86400, "EndTimeStamp": now}
            request.from_json_string(
                json.dumps({"SdkAppId": 1400000777, "PageSize": 10, "PageNumber": 0, **window})
            )
            client.DescribeTelCdr(request)

        with pytest.raises(TencentCloudSDKException) as caught:
            await asyncio.to_thread(read)
    assert caught.value.get_code() == "InvalidParameterValue"
