"""Huawei AICC: token life cycle, detail decoding, vanish rules, and the run-time watch list over NATS.

Everything runs against the simulator over loopback HTTP and a real nats-server; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio
import msgspec
import nats
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from poller.config import Config
from poller.errors import AuthFailed, BadResponse, ClientError, ServerError, Throttled, TokenExpired
from poller.pipeline.differ import diff
from poller.pipeline.identity import SourceId
from poller.pipeline.privacy import Privacy
from poller.pipeline.snapshot import Observation
from poller.pipeline.state import SourceState
from poller.runtime.control import answer, control_subject
from poller.runtime.service import Service
from poller.simulators.huawei_aicc import EXPIRED_TOKEN, HuaweiAiccSimulator
from poller.tools.natsserver import NatsServer
from poller.transport import Response
from poller.transport.ratelimit import LimiterRegistry
from poller.vendors.base import AdapterContext
from poller.vendors.huawei_aicc import (
    NOT_FOUND_CODE,
    HuaweiAiccAccount,
    HuaweiAiccSource,
    classify_detail,
    normalize,
)
from poller.vendors.watch import WatchList
from schemas import TaskAppeared, TaskState, TaskStatusChanged, TaskVanished
from schemas.vendors.huawei import TaskDetail, TaskDetailAnswer, WatchReply
from tests.helpers import make_config, polls_done, running, stream_events, wait_until

CLIENT_ID = "hw-client-e2e"
CLIENT_SECRET = "hw-secret-never-logged"
ACCOUNT = "hw-main"

#: the response example of the vendor doc (seed 004), verbatim
SEED_EXAMPLE = """{ "resCode": "0", "resMsg": "成功", "result": { "caseInfos": [ { "attachment": "", "caseNo": "000000000000000000000000000006", "closedDate": null, "contactId": "ciIy0000013y7cC8T2rA", "contactPhone": null, "createdDate": "2023-07-07 14:43:15", "creatorId": "10gg00000148QvgpaLAm", "description": "0704test", "dueDate": "2023-07-22 00:00:00", "extternalNo": null, "id": "c6m80000014iXKHqDw3c", "isUpgraded": false, "origin": "Voice", "ownerId": "10gg00000148QvgpaLAm", "parentId": null, "priority": "Low", "reason": null, "state": "Processing", "status": "tttttt", "stayDate": null, "suspendAccumulatedTime": null, "suspendDate": null, "title": "0704test", "type": "cvmC0000014ddysLTCZk" } ], "customerInfo": { "customerInfo": { "address": { "addressLine1": null, "addressLine2": null, "addressLine3": null, "addressLine4": null, "addressLine5": null, "addtionalAddress": null, "area": null, "block": null, "buildingNo": null, "city": null, "country": null, "defaultBillingAddress": false, "defaultShippingAddress": false, "firstName": null, "id": "cw8O0000013y7cCDIE4G", "label": null, "lastName": null, "middleName": null, "phoneNumber1": null, "phoneNumber2": null, "province": null, "roomNo": null, "street": null, "subjectId": "ciIy0000013y7cC8T2rA", "title": null, "town": null, "zip": null }, "age": null, "bindAccount": [], "birthDay": null, "cellPhone1": "15005167393", "cellPhone2": null, "cellPhone3": null, "channel": null, "createdDate": "2023-06-09 15:33:35", "customFied": null, "customerName": "客户1", "description": null, "email": "customer@huawei.com", "email1": null, "email2": null, "fax": null, "firstName": null, "gender": null, "id": "ciIy0000013y7cC8T2rA", "lastModifiedDate": "2023-06-09 15:33:35", "lastName": null, "level": null, "middleName": null, "name": null, "nickName": null, "organization": { "description": null, "email": null, "fax": null, "fixedPhone": null, "id": "cBbs0000013y7cBnkKMS", "industry": null, "logo": null, "organizationName": "公司", "scale": null, "summary": null, "website": null }, "organizationId": "cBbs0000013y7cBnkKMS", "phone": null, "phone1": null, "phone2": null, "phone3": null, "picture": null, "remark": null, "status": null, "title": null, "website": null } }, "taskInfo": { "attachment": "", "closedDate": null, "contactId": "ciIy0000013y7cC8T2rA", "createdDate": "2023-07-07 14:51:35", "creatorId": "10gg00000148QvgpaLAm", "creatorName": "10gg00000148QvgpaLAm", "description": "test001", "dueDate": "2023-07-08 00:00:00", "id": "ccqG0000014iXvGKONQO", "ownerId": "10gg00000148QvgpaLAm", "ownerName": "liuhuqiong001", "priority": "Low", "relateId": "c6m80000014iXKHqDw3c", "status": "Pending", "stayDate": null, "taskNo": "000000000000000000000000001002", "title": "test002", "type": "Case" }, "taskTrace": [ { "creatorId": "10gg00000148QvgpaLAm", "creatorName": "10gg00000148QvgpaLAm", "description": null, "relatedId": null, "title": null, "type": "CreateTask" } ] } }"""  # noqa: E501

NOT_FOUND = frozenset({NOT_FOUND_CODE})


def huawei_source(sim: HuaweiAiccSimulator, ids: list[str], **extra: object) -> dict[str, object]:
    return {
        "vendor": "huawei-aicc",
        "account": ACCOUNT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "task_ids": ids,
        "endpoint": sim.url,
        "poll_interval": 0.05,
        "retries": 1,
        "failure_backoff": 0.2,
        **extra,
    }


def simulator(**kwargs: Any) -> HuaweiAiccSimulator:
    return HuaweiAiccSimulator(clients={CLIENT_ID: CLIENT_SECRET}, seed=4, **kwargs)


# -- decoding and classification (pure) ----------------------------------------------------------
def test_the_doc_example_decodes_verbatim_in_both_shapes() -> None:
    answer = classify_detail(Response(200, {}, SEED_EXAMPLE.encode()), NOT_FOUND)
    detail = answer.detail
    assert detail is not None and detail.taskInfo is not None
    info = detail.taskInfo
    assert (info.id, info.title, info.status, info.closedDate) == (
        "ccqG0000014iXvGKONQO",
        "test002",
        "Pending",
        None,
    )
    assert detail.taskTrace is not None and [t.type for t in detail.taskTrace] == ["CreateTask"]
    assert isinstance(detail.caseInfos, list) and detail.caseInfos[0].state == "Processing"
    snap = normalize("ccqG0000014iXvGKONQO", detail)
    assert (snap.state, snap.raw_state, snap.name) == (TaskState.PENDING, "Pending", "test002")

    # the bare shape the doc's table describes decodes to the same detail
    bare = json.dumps(json.loads(SEED_EXAMPLE)["result"], ensure_ascii=False).encode()
    bare_answer = classify_detail(Response(200, {}, bare), NOT_FOUND)
    assert bare_answer.detail == detail


def test_status_normalization_and_error_classification() -> None:
    def detail(status: str | None, closed: str | None = None) -> TaskDetail:
        body = {"taskInfo": {"title": "t", "status": status, "closedDate": closed, "extraField": [1]}}
        return msgspec.json.decode(json.dumps(body), type=TaskDetailAnswer)

    assert normalize("x", detail("Processing")).state is TaskState.RUNNING
    assert normalize("x", detail("Suspended")).state is TaskState.PAUSED
    assert normalize("x", detail("Cancelled")).state is TaskState.CANCELLED
    closed = normalize("x", detail(None, "2023-07-08 10:00:00"))
    assert (closed.state, closed.raw_state) == (TaskState.COMPLETED, "closed")
    odd = normalize("x", detail("SomethingNew"))
    assert (odd.state, odd.raw_state) == (TaskState.UNKNOWN, "SomethingNew")

    def envelope(status: int, code: str) -> Response:
        return Response(status, {}, json.dumps({"resCode": code, "resMsg": "m", "result": None}).encode())

    expected: list[tuple[Response, type[Exception]]] = [
        (envelope(401, EXPIRED_TOKEN), TokenExpired),
        (envelope(401, "CM-401001"), TokenExpired),
        (envelope(403, "CM-403001"), AuthFailed),
        (envelope(400, "CM-400001"), ClientError),
        (envelope(200, "CM-400001"), ClientError),
        (envelope(500, "CM-500001"), ServerError),
        (Response(429, {}, b'{"error_code":"APIG.0308","error_msg":"throttled"}'), Throttled),
        # a bare 404 (a wrong path, say) is never "the task does not exist"
        (Response(404, {}, b"<html>Not Found</html>"), ClientError),
        (Response(200, {}, b'{"resCode":"0","resMsg":"ok","result":{}}'), BadResponse),
        (Response(200, {}, b"<html>"), BadResponse),
    ]
    for resp, error in expected:
        with pytest.raises(error):
            classify_detail(resp, NOT_FOUND)
    gone = classify_detail(envelope(404, NOT_FOUND_CODE), NOT_FOUND)
    assert gone.detail is None


def test_watch_list_requests_and_their_persistence() -> None:
    watch = WatchList(["a1", "b2"])
    watch.load({"watch.c3": 1, "watch.b2": 0, "other": 7})
    assert watch.watched() == ["a1", "c3"]
    reply = answer("huawei-aicc", ACCOUNT, watch, b'{"add": ["d4", "a1"], "remove": ["c3", "zz"]}')
    assert (reply.ok, reply.added, reply.removed, reply.watched) == (True, ["d4"], ["c3"], ["a1", "d4"])
    assert watch.cursors() == {"watch.c3": 0, "watch.b2": 0, "watch.d4": 1}
    bad = [
        b"not json",
        b'{"add": "a1"}',
        b'{"add": ["bad id!"]}',
        b'{"add": ["x"], "remove": ["x"]}',
        b'{"x": 1}',
    ]
    for body in bad:
        reply = answer("huawei-aicc", ACCOUNT, watch, body)
        assert not reply.ok and reply.error
    assert watch.watched() == ["a1", "d4"]  # a refused request changes nothing
    # a restarted process sees the committed decisions, whatever the file says
    again = WatchList(["a1", "b2"])
    again.load({**watch.cursors()})
    assert again.watched() == ["a1", "d4"]


# -- the adapter against the simulator (no NATS) -------------------------------------------------------
@contextlib.asynccontextmanager
async def adapter(
    sim: HuaweiAiccSimulator, ids: list[str], **extra: object
) -> AsyncIterator[HuaweiAiccSource]:
    account = make_config("nats://127.0.0.1:1", [huawei_source(sim, ids, **extra)]).sources[0]
    assert isinstance(account, HuaweiAiccAccount)
    async with aiohttp.ClientSession() as http:
        yield HuaweiAiccSource(account, AdapterContext(http=http, limiters=LimiterRegistry()))


async def test_token_is_fetched_once_and_refreshed_before_it_expires() -> None:
    async with simulator(token_lifetime=2) as sim:
        ids = [sim.add_task() for _ in range(2)]
        async with adapter(sim, ids) as source:
            for _ in range(5):
                observation = await source.observe(SourceState())
                assert observation.complete and len(observation.entities) == 2
            assert sim.tokens_issued == 1  # one token serves many requests
            while sim.tokens_issued < 2:
                await source.observe(SourceState())
                await anyio.sleep(0.05)
        # refreshed at 80% of its lifetime: no request ever presented an expired token
        assert sim.expired_answers == 0
        assert sim.log.count(api="token") == sim.tokens_issued == 2


async def test_token_is_refreshed_once_after_an_expired_token_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with simulator() as sim:
        ids = [sim.add_task() for _ in range(3)]
        async with adapter(sim, ids, retries=2) as source:
            await source.observe(SourceState())
            sim.expire_tokens()
            observation = await source.observe(SourceState())
        assert observation.complete and len(observation.entities) == 3
        assert sim.expired_answers >= 1
        # three requests saw the expired token at once; they share one new token
        assert sim.log.count(api="token") == sim.tokens_issued == 2
    logged = "\n".join([r.getMessage() for r in caplog.records] + [repr(r.__dict__) for r in caplog.records])
    assert all(token not in logged for token in sim.tokens) and CLIENT_SECRET not in logged


async def test_a_wrong_client_secret_is_an_auth_failure_that_names_no_secret() -> None:
    async with simulator() as sim:
        ids = [sim.add_task()]
        async with adapter(sim, ids, client_secret="wrong-" + CLIENT_SECRET) as source:
            with pytest.raises(AuthFailed) as caught:
                await source.observe(SourceState())
        assert caught.value.api == "token" and "invalid_client" in str(caught.value)
        assert CLIENT_SECRET not in str(caught.value)
        assert sim.tokens_issued == 0 and sim.log.count(api="task_detail") == 0


async def test_only_a_cycle_without_failures_lets_a_deleted_task_vanish() -> None:
    source_id = SourceId(vendor="huawei-aicc", account=ACCOUNT)
    now = datetime.now(UTC)

    def step(state: SourceState, observation: Observation) -> tuple[SourceState, list[str]]:
        d = diff(source_id, state, observation, now, Privacy())
        return d.state, [type(e).__name__ for e in d.events]

    async with simulator() as sim:
        a, b, c = (sim.add_task() for _ in range(3))
        async with adapter(sim, [a, b, c], retries=0) as source:
            state, kinds = step(SourceState(), await source.observe(SourceState()))
            assert kinds == ["TaskAppeared"] * 3
            sim.remove_task(b)
            sim.failing_tasks.add(c)
            observation = await source.observe(state)
            assert not observation.complete
            state, kinds = step(state, observation)
            assert kinds == []  # b is gone, but c failed: nothing vanishes
            sim.failing_tasks.update({a, b})
            with pytest.raises(ServerError):  # no id answered: the cycle fails as a whole
                await source.observe(state)
            sim.failing_tasks.clear()
            observation = await source.observe(state)
            assert observation.complete
            state, kinds = step(state, observation)
            assert kinds == ["TaskVanished"]
            assert state.entities[b].state == "vanished"


# -- end to end on a real nats-server ---------------------------------------------------------------
async def test_scripted_status_changes_give_exactly_those_events(nats_server: NatsServer) -> None:
    async with simulator() as sim:
        watched = [sim.add_task(f"回访 {n}") for n in range(3)]
        unwatched = sim.add_task("not ours")
        config = make_config(nats_server.url, [huawei_source(sim, watched)])
        script = [
            (watched[0], "Processing"),
            (watched[1], "Processing"),
            (unwatched, "Processing"),
            (watched[0], "Suspended"),
            (watched[0], "Processing"),
            (watched[1], "Completed"),
            (watched[2], "Cancelled"),
        ]
        async with running(config) as service:
            await polls_done(service, 1)
            for task_id, status in script:
                sim.set_status(task_id, status)
                await polls_done(service, 2)
        assert sim.requests_by_task[unwatched] == 0
        assert sim.log.count("throttled") == 0

    events = await stream_events(nats_server.url)
    assert Counter(type(e).__name__ for e in events) == {"TaskAppeared": 3, "TaskStatusChanged": 6}
    appeared = [e for e in events if isinstance(e, TaskAppeared)]
    assert {e.entity_id for e in appeared} == set(watched)
    assert all(e.current.state is TaskState.PENDING and e.current.raw == "Pending" for e in appeared)
    changes = [e for e in events if isinstance(e, TaskStatusChanged)]
    previous = dict.fromkeys(watched, "Pending")
    expected = []
    for task_id, status in script:
        if task_id in previous:
            expected.append((task_id, previous[task_id], status))
            previous[task_id] = status
    assert [(e.entity_id, e.previous.raw, e.current.raw) for e in changes] == expected
    assert [e.current.state for e in changes] == [
        TaskState.RUNNING,
        TaskState.RUNNING,
        TaskState.PAUSED,
        TaskState.RUNNING,
        TaskState.COMPLETED,
        TaskState.CANCELLED,
    ]
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.vendor == "huawei-aicc" and e.account == ACCOUNT for e in events)


@contextlib.asynccontextmanager
async def running_with_control(config: Config) -> AsyncIterator[Service]:
    service = Service(config)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await service.run()  # the control subject is served by every Service

        tg.start_soon(run)
        with anyio.fail_after(15):
            await service.started.wait()
        try:
            yield service
        finally:
            service.stop()


async def control(nats_url: str, body: bytes) -> WatchReply:
    """One request on the account's control subject (retried while the subscription comes up)."""
    subject = control_subject("aicc", "huawei-aicc", ACCOUNT)
    nc = await nats.connect(nats_url)
    try:
        with anyio.fail_after(15):
            while True:
                try:
                    msg = await nc.request(subject, body, timeout=6)
                    return msgspec.json.decode(msg.data, type=WatchReply)
                except (NoRespondersError, NatsTimeout):
                    await anyio.sleep(0.05)
    finally:
        await nc.close()


async def test_watch_list_changes_at_run_time_and_survives_a_restart(nats_server: NatsServer) -> None:
    # the international doc's POST, and the bare answer shape
    async with simulator(bare=True) as sim:
        first, second = sim.add_task("first"), sim.add_task("second")
        config = make_config(nats_server.url, [huawei_source(sim, [first], method="POST")])
        async with running_with_control(config) as service:
            assert (await control(nats_server.url, b"{}")).watched == [first]

            reply = await control(nats_server.url, json.dumps({"add": [second]}).encode())
            assert (reply.ok, reply.added, reply.watched) == (True, [second], sorted([first, second]))

            async def appeared(task_id: str) -> bool:
                events = await stream_events(nats_server.url)
                return any(isinstance(e, TaskAppeared) and e.entity_id == task_id for e in events)

            await wait_until(lambda: appeared(second), timeout=10)

            reply = await control(nats_server.url, json.dumps({"remove": [first]}).encode())
            assert (reply.ok, reply.removed, reply.watched) == (True, [first], [second])
            await polls_done(service, 2)
            polled = sim.requests_by_task[first]
            sim.set_status(first, "Completed")  # no longer ours: no event
            for body in (
                b"{oops",
                b'{"add": ["../../x"]}',
                b'{"add": ["x"], "remove": ["x"]}',
                b'{"drop": []}',
            ):
                reply = await control(nats_server.url, body)
                assert not reply.ok and reply.error and reply.watched == []
            # the service kept running: it still sees the world move
            sim.set_status(second, "Processing")
            await polls_done(service, 3)
            assert sim.requests_by_task[first] == polled
        before_restart = await stream_events(nats_server.url)

        async with running_with_control(config) as service:
            assert (await control(nats_server.url, b"{}")).watched == [second]
            polled_second = sim.requests_by_task[second]
            await polls_done(service, 3)
            assert sim.requests_by_task[second] > polled_second
            assert sim.requests_by_task[first] == polled
            assert await stream_events(nats_server.url) == before_restart  # nothing re-published
            sim.set_status(second, "Completed")
            await polls_done(service, 2)

    events = await stream_events(nats_server.url)
    assert not any(isinstance(e, TaskVanished) for e in events)
    assert [(type(e).__name__, e.entity_id) for e in events if hasattr(e, "entity_id")] == [
        ("TaskAppeared", first),
        ("TaskAppeared", second),
        ("TaskStatusChanged", second),
        ("TaskStatusChanged", second),
    ]
    changes = [e for e in events if isinstance(e, TaskStatusChanged)]
    assert [(e.previous.raw, e.current.raw) for e in changes] == [
        ("Pending", "Processing"),
        ("Processing", "Completed"),
    ]
