"""Alibaba OutboundBot and AICCS: wire models, normalization, simulators, adapters, official SDKs, e2e."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from alibabacloud_aiccs20191015 import models as aiccs_models  # type: ignore[import-untyped]
from alibabacloud_aiccs20191015.client import Client as AiccsClient  # type: ignore[import-untyped]
from alibabacloud_outboundbot20191226 import models as outboundbot_models  # type: ignore[import-untyped]
from alibabacloud_outboundbot20191226.client import Client as OutboundBotClient  # type: ignore[import-untyped]
from alibabacloud_tea_openapi import models as open_api_models  # type: ignore[import-untyped]
from Tea.exceptions import TeaException  # type: ignore[import-untyped]

from poller.errors import AuthFailed, BadResponse, ClientError, ServerError, SourceError, Throttled
from poller.pipeline.privacy import mask_phone
from poller.pipeline.snapshot import Observation
from poller.pipeline.state import SourceState
from poller.simulators.alibaba_aiccs import AiccsSimulator
from poller.simulators.alibaba_aiccs import demo_setup as aiccs_demo
from poller.simulators.alibaba_common import AlibabaSimulator
from poller.simulators.alibaba_outboundbot import OutboundBotSimulator
from poller.simulators.alibaba_outboundbot import demo_setup as outboundbot_demo
from poller.simulators.base import Fault
from poller.tools.natsserver import NatsServer
from poller.transport import Response
from poller.transport.ratelimit import LimiterRegistry
from poller.vendors.alibaba_aiccs import STATES as AICCS_STATES
from poller.vendors.alibaba_common import RpcSigner, check_envelope, classifier, error_for
from poller.vendors.alibaba_outboundbot import (
    FAILURE_REASONS,
    JOB_STATES,
    call_of,
    group_entity,
    job_entity,
)
from poller.vendors.base import AdapterContext, Source
from poller.vendors.normalize import log as normalize_log
from schemas import (
    CallFinished,
    CallOutcome,
    EntityKind,
    JobStatusChanged,
    TaskAppeared,
    TaskProgress,
    TaskState,
    TaskStatusChanged,
    TaskVanished,
)
from schemas.vendors.alibaba import (
    ErrorBody,
    Job,
    ListJobsByGroupResponse,
    ListTaskResponse,
    NumberList,
    decoder,
)
from tests.helpers import make_config, polls_done, running, stream_events

FIXTURES = Path(__file__).parent / "fixtures" / "alibaba"
AK = "LTAI5tSimulatedKey"
SECRET = "alibaba-test-secret-never-logged"
INSTANCE = "af81a389-91f0-4157-8d82-720edd02b66a"
GROUP = "de48407d-309e-451a-81ec-6fb11f8fdbf3"


# -- wire models ----------------------------------------------------------------------------------------
def test_the_seed_json_examples_decode_verbatim() -> None:
    """Seed 000 sends every number and boolean as a string and CallingNumbers as a JSON string."""
    jobs = decoder(ListJobsByGroupResponse).decode((FIXTURES / "list_jobs_by_group.json").read_bytes())
    assert (jobs.Success, jobs.HttpStatusCode, jobs.Code) == (True, 200, "OK")
    assert jobs.Jobs is not None
    assert (jobs.Jobs.TotalCount, jobs.Jobs.PageSize, jobs.Jobs.PageNumber) == (1, 10, 1)
    (job,) = jobs.Jobs.List
    assert (job.JobId, job.Status, job.FailureReason) == (
        "b72425bd-7871-4050-838e-033d80d754b7",
        "Succeeded",
        "NoAnswer",
    )
    assert (job.Priority, job.SystemPriority) == (5, 1)
    assert job.CallingNumbers == NumberList(["0571****3106"])
    assert job.Contacts[0].PhoneNumber == "135****8888" and job.Contacts[0].ContactName == "张三"
    assert job.Extras[0].Value == "2019-08-21 09:49:59.0" and job.Summary[0].SummaryName == "score"

    tasks = decoder(ListTaskResponse).decode((FIXTURES / "list_task.json").read_bytes())
    assert tasks.Success is True and tasks.Data is not None
    assert (tasks.Data.PageNo, tasks.Data.PageSize, tasks.Data.Total) == (1, 20, 50)
    (record,) = tasks.Data.Record
    assert (record.Status, record.TaskName, record.TotalCount, record.CompleteCount) == (
        "RELEASE",
        "测试任务",
        1,
        1,
    )
    assert record.GmtCreate == record.FireTime == 1618477232000  # epoch-ms strings → int


@pytest.mark.parametrize(
    ("raw", "numbers"),
    [
        ('["0571****3106", "0571****3107"]', ["0571****3106", "0571****3107"]),
        ('"[\\"0571****3106\\"]"', ["0571****3106"]),
        ('"057100001"', ["057100001"]),
        ('""', []),
        ("[]", []),
    ],
)
def test_calling_numbers_come_as_a_list_or_a_json_encoded_string(raw: str, numbers: list[str]) -> None:
    job = decoder(Job).decode(f'{{"JobId": "j", "Status": "Executing", "CallingNumbers": {raw}}}'.encode())
    assert job.CallingNumbers == NumberList(numbers)


@pytest.mark.parametrize("raw", ['"[1, "', "{}", '[{"a": 1}]', "true"])
def test_calling_numbers_of_another_shape_do_not_decode(raw: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        decoder(Job).decode(f'{{"JobId": "j", "Status": "Executing", "CallingNumbers": {raw}}}'.encode())


def test_numbers_that_are_not_numbers_do_not_decode() -> None:
    with pytest.raises(msgspec.ValidationError):
        decoder(ListTaskResponse).decode(b'{"Data": {"PageNo": "one", "PageSize": 1, "Total": 0}}')


# -- normalization ----------------------------------------------------------------------------------------
def test_job_statuses_and_failure_reasons_normalize() -> None:
    expected = {
        "Scheduling": TaskState.PENDING,
        "Executing": TaskState.RUNNING,
        "Succeeded": TaskState.COMPLETED,
        "Paused": TaskState.PAUSED,
        "Failed": TaskState.FAILED,
        "Cancelled": TaskState.CANCELLED,
        "Drafted": TaskState.PENDING,
    }
    assert {raw: JOB_STATES.normalize(raw) for raw in expected} == expected
    reasons = {
        "NoAnswer": CallOutcome.NO_ANSWER,
        "Busy": CallOutcome.BUSY,
        "PoweredOff": CallOutcome.POWERED_OFF,
        "PowerOff": CallOutcome.POWERED_OFF,
        "EmptyNumber": CallOutcome.INVALID_NUMBER,
        "NotExist": CallOutcome.INVALID_NUMBER,
        "InvalidNumber": CallOutcome.INVALID_NUMBER,
        "Vacant": CallOutcome.INVALID_NUMBER,
        "Rejected": CallOutcome.REJECTED,
        "OutOfService": CallOutcome.SUSPENDED_LINE,
        "ContactSuspended": CallOutcome.SUSPENDED_LINE,
        "CallingNumberNotExist": CallOutcome.CALLER_NUMBER_UNAVAILABLE,
        "ContactBlockList": CallOutcome.FAILED,
        "Unknown": CallOutcome.UNKNOWN,
    }
    assert {raw: FAILURE_REASONS.normalize(raw) for raw in reasons} == reasons


def test_aiccs_statuses_normalize() -> None:
    expected = {
        "INIT": TaskState.PENDING,
        "RELEASE": TaskState.PENDING,
        "READY": TaskState.PENDING,
        "RUNNING": TaskState.RUNNING,
        "STOP": TaskState.PAUSED,
        "SYSTEM_STOP": TaskState.PAUSED_BY_SYSTEM,
        "CANCEL": TaskState.CANCELLED,
        "SYSTEM_CANCEL": TaskState.CANCELLED_BY_SYSTEM,
        "DONE": TaskState.COMPLETED,
    }
    assert {raw: AICCS_STATES.normalize(raw) for raw in expected} == expected


def _job(status: str, reason: str | None = None, **extra: Any) -> Job:
    body = {"JobId": f"job-{status}", "Status": status, "FailureReason": reason, **extra}
    return decoder(Job).decode(msgspec.json.encode(body))


def test_only_succeeded_and_failed_jobs_carry_a_finished_call() -> None:
    contact = {"PhoneNumber": "13900001111", "ContactName": "王五"}
    answered = call_of(_job("Succeeded", "NoAnswer", Contacts=[contact]), GROUP)
    assert answered is not None
    assert (answered.outcome, answered.raw_outcome, answered.failure_reason) == (
        CallOutcome.ANSWERED,
        "Succeeded",
        None,
    )
    assert (answered.call_id, answered.task_id) == ("job-Succeeded", GROUP)
    assert (answered.callee_number, answered.callee_name) == ("13900001111", "王五")
    busy = call_of(_job("Failed", "Busy"), GROUP)
    assert busy is not None
    assert (busy.outcome, busy.raw_outcome, busy.failure_reason, busy.callee_number) == (
        CallOutcome.BUSY,
        "Busy",
        "Busy",
        None,
    )
    no_reason = call_of(_job("Failed"), GROUP)
    assert no_reason is not None and no_reason.outcome is CallOutcome.FAILED
    assert [call_of(_job(s), GROUP) for s in ("Cancelled", "Executing", "Scheduling", "Paused")] == [None] * 4


def test_unknown_raw_values_map_to_unknown_and_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=normalize_log.name)
    for _ in range(3):
        job = job_entity(_job("Exploded"), GROUP)
        assert (job.state, job.raw_state, job.call) == (TaskState.UNKNOWN, "Exploded", None)
        call = call_of(_job("Failed", "CosmicRay"), GROUP)
        assert call is not None and call.outcome is CallOutcome.UNKNOWN and call.raw_outcome == "CosmicRay"
    assert len(caplog.records) == 2


def test_job_group_counts_jobs_per_state_and_terminal_ones_as_done() -> None:
    statuses = ["Scheduling", "Executing", "Succeeded", "Failed", "Cancelled", "Paused", "Drafted"]
    jobs = [job_entity(_job(s), GROUP) for s in statuses]
    group = group_entity(GROUP, INSTANCE, jobs)
    assert (group.kind, group.id, group.parent_id) == (EntityKind.JOB_GROUP, GROUP, INSTANCE)
    assert (group.completed, group.total, group.state) == (3, 7, TaskState.RUNNING)
    assert group.by_state == {
        "cancelled": 1,
        "completed": 1,
        "failed": 1,
        "paused": 1,
        "pending": 2,
        "running": 1,
    }
    done = group_entity(GROUP, INSTANCE, jobs[2:5])
    assert (done.completed, done.total, done.state) == (3, 3, TaskState.COMPLETED)
    assert group_entity(GROUP, INSTANCE, []).state is TaskState.PENDING


# -- error classification ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("Throttling.User", 400, Throttled),
        ("Throttling", 400, Throttled),
        ("Throttling.Api", 503, Throttled),
        ("SignatureDoesNotMatch", 400, AuthFailed),
        ("IncompleteSignature", 400, AuthFailed),
        ("InvalidAccessKeyId.NotFound", 404, AuthFailed),
        ("InvalidAccessKeyId.Inactive", 400, AuthFailed),
        ("Forbidden.RAM", 403, AuthFailed),
        ("PermissionInsufficient", 400, AuthFailed),
        ("InternalError", 500, ServerError),
        ("ServiceUnavailable", 503, ServerError),
        ("SomethingNew", 502, ServerError),
        ("NotExist.Instance", 404, ClientError),
        ("ParameterError", 400, ClientError),
        ("InvalidParameter", 400, ClientError),
    ],
)
def test_vendor_error_codes_are_classified(code: str, status: int, kind: type[SourceError]) -> None:
    body = msgspec.json.encode(ErrorBody(Code=code, Message="m", RequestId="r", HostId="h", Recommend="x"))
    with pytest.raises(kind) as caught:
        classifier("ListTask")(Response(status, {}, body))
    assert type(caught.value) is kind and caught.value.api == "ListTask" and code in str(caught.value)
    assert type(error_for(code, "m", status, "ListTask")) is kind


def test_answers_without_an_error_body_and_unsuccessful_envelopes() -> None:
    classify = classifier("ListJobsByGroup")
    classify(Response(200, {}, b"{}"))  # a 200 is judged by its body later
    with pytest.raises(ServerError):
        classify(Response(502, {}, b"<html>bad gateway</html>"))
    with pytest.raises(BadResponse):
        classify(Response(403, {}, b"<html>denied</html>"))
    with pytest.raises(BadResponse):
        classify(Response(302, {}, b""))
    check_envelope("ListJobsByGroup", success=True, code="OK", message="Success", http_status=200)
    with pytest.raises(AuthFailed):
        check_envelope(
            "ListJobsByGroup", success=False, code="Forbidden.NoPermission", message="", http_status=403
        )
    with pytest.raises(ClientError):
        check_envelope(
            "ListJobsByGroup", success=None, code="NotExist.JobGroup", message="", http_status=None
        )


# -- the adapters against the simulators (no NATS) ---------------------------------------------------------
def outboundbot_source(sim: AlibabaSimulator, groups: list[str], **extra: object) -> dict[str, object]:
    return {
        "vendor": "alibaba-outboundbot",
        "account": "ob-main",
        "instance_id": INSTANCE,
        "job_group_ids": groups,
        "access_key_id": AK,
        "access_key_secret": SECRET,
        "endpoint": sim.url,
        "poll_interval": 0.05,
        "page_size": 3,
        "retries": 1,
        "failure_backoff": 0.2,
        **extra,
    }


def aiccs_source(sim: AlibabaSimulator, **extra: object) -> dict[str, object]:
    return {
        "vendor": "alibaba-aiccs",
        "account": "aiccs-main",
        "access_key_id": AK,
        "access_key_secret": SECRET,
        "endpoint": sim.url,
        "poll_interval": 0.05,
        "page_size": 3,
        "retries": 1,
        "failure_backoff": 0.2,
        **extra,
    }


@contextlib.asynccontextmanager
async def adapters(*entries: dict[str, object]) -> AsyncIterator[list[Source]]:
    """The sources of these config entries, sharing one HTTP session and one limiter registry."""
    config = make_config("nats://127.0.0.1:1", list(entries))
    async with aiohttp.ClientSession() as http:
        ctx = AdapterContext(http=http, limiters=LimiterRegistry(), backoff_base=0.01)
        sources: list[Source] = []
        for account in config.sources:
            from poller.vendors import VENDORS

            sources.extend(VENDORS[account.vendor].sources(account, ctx))
        yield sources


@pytest.mark.parametrize("stringly", [False, True], ids=["typed", "stringly"])
@pytest.mark.parametrize("signature", ["v3", "v1"])
async def test_outboundbot_adapter_reads_every_page(signature: str, stringly: bool) -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}, stringly=stringly) as sim:
        sim.add_group(INSTANCE, GROUP)
        jobs = [sim.add_job(INSTANCE, GROUP) for _ in range(7)]
        sim.set_status(jobs[0], "Succeeded")
        sim.set_status(jobs[1], "Failed", "PoweredOff")
        sim.set_status(jobs[2], "Executing")
        async with adapters(outboundbot_source(sim, [GROUP], signature=signature)) as (source,):
            observation = await source.observe(SourceState())
    assert observation.complete
    by_id = {e.id: e for e in observation.entities}
    assert set(by_id) == {*jobs, GROUP}
    group = by_id[GROUP]
    assert (group.kind, group.completed, group.total, group.by_state) == (
        EntityKind.JOB_GROUP,
        2,
        7,
        {"completed": 1, "failed": 1, "pending": 4, "running": 1},
    )
    answered, failed = by_id[jobs[0]].call, by_id[jobs[1]].call
    assert answered is not None and answered.outcome is CallOutcome.ANSWERED
    assert failed is not None and (failed.outcome, failed.failure_reason) == (
        CallOutcome.POWERED_OFF,
        "PoweredOff",
    )
    assert failed.callee_number == sim.job(jobs[1]).callee_number
    assert all(by_id[j].parent_id == GROUP and by_id[j].kind is EntityKind.JOB for j in jobs)
    assert [r.outcome for r in sim.log.records] == ["ok"] * 3  # pages 1..3 of 3


@pytest.mark.parametrize("stringly", [False, True], ids=["typed", "stringly"])
@pytest.mark.parametrize("signature", ["v3", "v1"])
async def test_aiccs_adapter_reads_every_page(signature: str, stringly: bool) -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, stringly=stringly) as sim:
        tasks = [sim.add_task(f"任务 {n}", total=10) for n in range(5)]
        sim.set_task(tasks[1], status="SYSTEM_STOP", complete=4)
        async with adapters(aiccs_source(sim, signature=signature)) as (source,):
            observation = await source.observe(SourceState())
    assert observation.complete
    got = [(e.id, e.name, e.state, e.raw_state, e.completed, e.total) for e in observation.entities]
    assert got[1] == (str(tasks[1]), "任务 1", TaskState.PAUSED_BY_SYSTEM, "SYSTEM_STOP", 4, 10)
    assert [g[0] for g in got] == [str(t) for t in tasks]
    assert [r.outcome for r in sim.log.records if r.api == "ListTask"] == ["ok"] * 2
    # the paused task can still place calls: its details are read (none called yet, so no call)
    assert [r.outcome for r in sim.log.records if r.api == "ListTaskDetail"] == ["ok"]
    assert observation.calls == []


async def test_aiccs_hands_unchanged_tasks_back_as_last_sweeps_snapshots() -> None:
    """What lets the differ skip them (see SeenItems and the differ's Basis); a change is built anew."""
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        tasks = [sim.add_task(f"任务 {n}", total=10) for n in range(5)]
        async with adapters(aiccs_source(sim, calls=False)) as (source,):
            first = {e.id: e for e in (await source.observe(SourceState())).entities}
            sim.set_task(tasks[3], status="RUNNING")
            second = {e.id: e for e in (await source.observe(SourceState())).entities}
    changed = str(tasks[3])
    assert all(second[i] is first[i] for i in first if i != changed)
    assert second[changed] is not first[changed] and second[changed].raw_state == "RUNNING"


@pytest.mark.parametrize("signature", ["v3", "v1"])
async def test_ids_that_need_percent_encoding_survive_signing_and_transport(signature: str) -> None:
    """Our signer, aiohttp's query encoding and the simulator's verification agree on odd values."""
    instance, group = "实例 a+b*c~d/e%f&g=h", "组 !'()*;:@,?#[]"
    async with OutboundBotSimulator(credentials={AK: SECRET}) as sim:
        job = sim.add_job(instance, group)
        entry = outboundbot_source(sim, [group], instance_id=instance, signature=signature)
        async with adapters(entry) as (source,):
            observation = await source.observe(SourceState())
    assert observation.complete and {e.id for e in observation.entities} == {job, group}


async def test_a_job_group_that_changes_between_pages_is_not_complete() -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}) as sim:
        jobs = [sim.add_job(INSTANCE, GROUP) for _ in range(7)]

        def drop_first_job(page: int) -> None:
            if page == 2 and jobs[0] in sim.instances[INSTANCE].groups[GROUP]:
                sim.remove_job(jobs[0])

        sim.before_page = drop_first_job
        async with adapters(outboundbot_source(sim, [GROUP])) as (source,):
            partial = await source.observe(SourceState())
            again = await source.observe(SourceState())
    # page 1 said 7, later pages 6: the listing missed a job, so no vanish and no group counts
    assert not partial.complete
    assert all(e.kind is EntityKind.JOB for e in partial.entities)
    assert again.complete and {e.id for e in again.entities} == {*jobs[1:], GROUP}


async def test_a_throttling_answer_slows_the_api_and_the_poll_still_finishes() -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}) as sim:
        sim.add_group(INSTANCE, GROUP)
        for _ in range(5):
            sim.add_job(INSTANCE, GROUP)
        # two pages, fetched one after the other: the second one is throttled once
        sim.inject(Fault.THROTTLE, remaining=1, after=1)
        async with adapters(outboundbot_source(sim, [GROUP])) as (source,):
            observation = await source.observe(SourceState())
            limiter = source.limiter("ListJobsByGroup", AK, 100)
    assert observation.complete and len(observation.entities) == 6
    assert sim.log.count("throttled") == 1 and limiter.throttle_answers == 1
    at = next(i for i, r in enumerate(sim.log.records) if r.outcome == "throttled")
    throttled, retried = sim.log.records[at], sim.log.records[at + 1]
    assert throttled.status == 400 and retried.outcome == "ok"
    # the whole API paused for at least one window before the next request
    assert retried.at - throttled.at >= 1.0


async def test_wrong_credentials_and_vendor_errors_are_classified() -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}) as sim:
        sim.add_group(INSTANCE, GROUP)
        for signature in ("v3", "v1"):
            wrong = outboundbot_source(sim, [GROUP], access_key_secret="wrong", signature=signature)
            async with adapters(wrong) as (source,):
                with pytest.raises(AuthFailed) as caught:
                    await source.observe(SourceState())
            assert "SignatureDoesNotMatch" in str(caught.value) and SECRET not in str(caught.value)
        async with adapters(outboundbot_source(sim, [GROUP], access_key_id="LTAInobody")) as (source,):
            with pytest.raises(AuthFailed, match=r"InvalidAccessKeyId\.NotFound"):
                await source.observe(SourceState())
        async with adapters(outboundbot_source(sim, [GROUP], instance_id="no-such-instance")) as (source,):
            with pytest.raises(ClientError, match=r"NotExist\.Instance"):
                await source.observe(SourceState())
        sim.inject(Fault.SERVER_ERROR, remaining=2)
        async with adapters(outboundbot_source(sim, [GROUP])) as (source,):
            with pytest.raises(ServerError, match="InternalError"):
                await source.observe(SourceState())
        sim.inject(Fault.SCHEMA_DRIFT, remaining=1)
        async with adapters(outboundbot_source(sim, [GROUP], retries=0)) as (source,):
            with pytest.raises(BadResponse):
                await source.observe(SourceState())
    async with AiccsSimulator(credentials={AK: SECRET}) as aiccs:
        aiccs.denied.add(AK)
        async with adapters(aiccs_source(aiccs)) as (source,):
            with pytest.raises(AuthFailed, match="PermissionInsufficient"):
                await source.observe(SourceState())
        statuses = Counter(r.status for r in aiccs.log.records)
    assert statuses == {0: 1}  # the handler's own error answer passes the gate as a request


async def test_an_unknown_raw_status_from_the_vendor_does_not_crash_the_poll() -> None:
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        task = sim.add_task()
        sim.set_task(task, status="ARCHIVED")
        async with adapters(aiccs_source(sim)) as (source,):
            (entity,) = (await source.observe(SourceState())).entities
    assert (entity.state, entity.raw_state) == (TaskState.UNKNOWN, "ARCHIVED")


async def test_aiccs_limit_is_api_wide_on_both_sides() -> None:
    """500/s for all users together: the simulator counts every key in one window, the poller too."""
    other_ak, other_secret = "LTAI5tOtherAccount", "other-secret"
    async with AiccsSimulator(credentials={AK: SECRET, other_ak: other_secret}, rate_limit=3) as sim:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for n in range(4):
                key, secret = (AK, SECRET) if n % 2 else (other_ak, other_secret)
                statuses.append(await _raw_list_task(http, sim, key, secret))
        assert statuses == [200, 200, 200, 400]
        first = {**aiccs_source(sim), "account": "a"}
        second = {
            **aiccs_source(sim),
            "account": "b",
            "access_key_id": other_ak,
            "access_key_secret": other_secret,
        }
        async with adapters(first, second) as (one, two):
            assert one.limiter("ListTask", "*", 500) is two.limiter("ListTask", "*", 500)


async def _raw_list_task(http: aiohttp.ClientSession, sim: AiccsSimulator, key: str, secret: str) -> int:
    from poller.secrets import Secret

    signer = RpcSigner(
        endpoint=sim.url,
        version=sim.version,
        access_key_id=key,
        access_key_secret=Secret(secret),
        signature="v3",
    )
    query, prepare = signer.request("ListTask", {"PageNo": "1", "PageSize": "5"})
    headers, _ = await prepare()
    async with http.post(signer.url, params=query, headers=headers) as resp:
        if resp.status != 200:
            assert msgspec.json.decode(await resp.read(), type=ErrorBody).Code == "Throttling.User"
        return resp.status


# -- fidelity: the official SDKs against the simulators ---------------------------------------------------
def _config(sim: AlibabaSimulator, secret: str, algorithm: str | None) -> open_api_models.Config:
    config = open_api_models.Config(
        access_key_id=AK,
        access_key_secret=secret,
        endpoint=sim.endpoint,
        protocol="http",
        region_id="cn-shanghai",
    )
    if algorithm is not None:
        config.signature_algorithm = algorithm
    return config


def _sdk_jobs(sim: OutboundBotSimulator, secret: str, algorithm: str | None, page: int) -> Any:
    client = OutboundBotClient(_config(sim, secret, algorithm))
    request = outboundbot_models.ListJobsByGroupRequest(
        instance_id=INSTANCE, job_group_id=GROUP, page_number=page, page_size=2
    )
    return client.list_jobs_by_group(request).body


def _sdk_tasks(sim: AiccsSimulator, secret: str, algorithm: str | None, page: int) -> Any:
    client = AiccsClient(_config(sim, secret, algorithm))
    return client.list_task(aiccs_models.ListTaskRequest(page_no=page, page_size=2)).body


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3-default", "v1"])
async def test_official_outboundbot_sdk_lists_jobs_from_the_simulator(algorithm: str | None) -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}) as sim:
        jobs = [sim.add_job(INSTANCE, GROUP) for _ in range(3)]
        sim.set_status(jobs[2], "Failed", "NoAnswer")
        first = await asyncio.to_thread(_sdk_jobs, sim, SECRET, algorithm, 1)
        second = await asyncio.to_thread(_sdk_jobs, sim, SECRET, algorithm, 2)
        with pytest.raises(TeaException) as caught:
            await asyncio.to_thread(_sdk_jobs, sim, "not-the-secret", algorithm, 1)
    assert (first.success, first.jobs.total_count, first.jobs.page_number) == (True, 3, 1)
    got = [(j.job_id, j.status, j.failure_reason) for j in first.jobs.list + second.jobs.list]
    assert got == [
        (jobs[0], "Scheduling", None),
        (jobs[1], "Scheduling", None),
        (jobs[2], "Failed", "NoAnswer"),
    ]
    assert first.jobs.list[0].contacts[0].phone_number == sim.job(jobs[0]).callee_number
    assert caught.value.code == "SignatureDoesNotMatch" and "code: 400" in caught.value.message
    assert [r.outcome for r in sim.log.records] == ["ok", "ok", "auth_failed"]


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3-default", "v1"])
async def test_official_aiccs_sdk_lists_tasks_from_the_simulator(algorithm: str | None) -> None:
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        tasks = [sim.add_task(f"回访 {n}", total=5) for n in range(3)]
        sim.set_task(tasks[0], status="RUNNING", complete=2)
        first = await asyncio.to_thread(_sdk_tasks, sim, SECRET, algorithm, 1)
        second = await asyncio.to_thread(_sdk_tasks, sim, SECRET, algorithm, 2)
        with pytest.raises(TeaException) as caught:
            await asyncio.to_thread(_sdk_tasks, sim, "not-the-secret", algorithm, 1)
        created = sim.task(tasks[0]).gmt_create
    assert (first.success, first.data.total, first.data.page_no) == (True, 3, 1)
    got = [(t.id, t.task_name, t.status, t.complete_count) for t in first.data.record + second.data.record]
    assert got == [
        (tasks[0], "回访 0", "RUNNING", 2),
        (tasks[1], "回访 1", "INIT", 0),
        (tasks[2], "回访 2", "INIT", 0),
    ]
    assert first.data.record[0].gmt_create == str(created)  # a string of epoch ms, as the vendor sends
    assert caught.value.code == "SignatureDoesNotMatch"


async def test_official_sdk_reads_the_vendors_string_spelling_and_error_bodies() -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}, stringly=True) as sim:
        sim.add_job(INSTANCE, GROUP)
        body = await asyncio.to_thread(_sdk_jobs, sim, SECRET, None, 1)
        sim.inject(Fault.THROTTLE, remaining=1)
        with pytest.raises(TeaException) as throttled:
            await asyncio.to_thread(_sdk_jobs, sim, SECRET, None, 1)
        sim.instances.clear()
        with pytest.raises(TeaException) as missing:
            await asyncio.to_thread(_sdk_jobs, sim, SECRET, "v2", 1)
    assert body.jobs.total_count == "1" and body.success == "true"  # the SDK passes strings through
    assert body.jobs.list[0].calling_numbers.startswith("[")
    assert throttled.value.code == "Throttling.User" and "code: 400" in throttled.value.message
    assert missing.value.code == "NotExist.Instance" and "code: 404" in missing.value.message
    assert missing.value.data["Recommend"].endswith("product=OutboundBot")


# -- demo worlds --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setup", [outboundbot_demo, aiccs_demo], ids=["outboundbot", "aiccs"])
async def test_demo_setup_is_pollable_and_evolves(setup: Callable[[int], Any]) -> None:
    demo = setup(7)
    async with demo.simulator as sim, adapters(*demo.sources(sim.url)) as sources:
        before = [await s.observe(SourceState()) for s in sources]
        for _ in range(20):
            demo.evolve()
        after = [await s.observe(SourceState()) for s in sources]
    assert all(o.complete and o.entities for o in before + after)

    def states(observations: list[Observation]) -> list[tuple[str, str]]:
        return [(e.id, e.raw_state) for o in observations for e in o.entities]

    assert states(before) != states(after)
    assert sim.log.count("throttled") == 0


# -- end to end on a real nats-server -----------------------------------------------------------------------
async def test_outboundbot_scripted_changes_give_exactly_those_events(nats_server: NatsServer) -> None:
    async with OutboundBotSimulator(credentials={AK: SECRET}, seed=3, stringly=True) as sim:
        jobs = [sim.add_job(INSTANCE, GROUP) for _ in range(5)]  # 2 pages of 3
        config = make_config(nats_server.url, [outboundbot_source(sim, [GROUP])])
        script: list[tuple[int, str, str | None]] = [
            (0, "Executing", None),
            (0, "Succeeded", None),
            (1, "Executing", None),
            (1, "Failed", "Busy"),
            (2, "Paused", None),
            (2, "Cancelled", None),
            (3, "Failed", "NoAnswer"),
            (4, "Exploded", None),
        ]
        async with running(config) as service:
            await polls_done(service, 1)
            for index, status, reason in script:
                sim.set_status(jobs[index], status, reason)
                await polls_done(service, 2)
        events = await stream_events(nats_server.url)
        numbers = {job: sim.job(job).callee_number for job in jobs}

    kinds = Counter(type(e).__name__ for e in events)
    assert kinds == {"TaskAppeared": 6, "JobStatusChanged": 8, "CallFinished": 3, "TaskProgress": 4}
    appeared = [e for e in events if isinstance(e, TaskAppeared)]
    assert {(e.kind, e.entity_id) for e in appeared} == {(EntityKind.JOB, j) for j in jobs} | {
        (EntityKind.JOB_GROUP, GROUP)
    }
    group_first = next(e for e in appeared if e.kind is EntityKind.JOB_GROUP)
    assert (group_first.completed, group_first.total, group_first.parent_id) == (0, 5, INSTANCE)

    changes = [e for e in events if isinstance(e, JobStatusChanged)]
    previous = dict.fromkeys(jobs, "Scheduling")
    expected = []
    for index, status, _ in script:
        expected.append((jobs[index], previous[jobs[index]], status))
        previous[jobs[index]] = status
    assert [(e.entity_id, e.previous.raw, e.current.raw) for e in changes] == expected
    assert all(e.parent_id == GROUP and e.kind is EntityKind.JOB for e in changes)
    assert changes[-1].current.state is TaskState.UNKNOWN

    calls = [e for e in events if isinstance(e, CallFinished)]
    assert [(c.call_id, c.outcome, c.raw_outcome, c.failure_reason) for c in calls] == [
        (jobs[0], CallOutcome.ANSWERED, "Succeeded", None),
        (jobs[1], CallOutcome.BUSY, "Busy", "Busy"),
        (jobs[3], CallOutcome.NO_ANSWER, "NoAnswer", "NoAnswer"),
    ]
    # personal data is masked by the default policy before it leaves the process
    assert [c.callee_number for c in calls] == [mask_phone(numbers[j]) for j in (jobs[0], jobs[1], jobs[3])]
    # the call goes out right before the status change that finished it
    for call in calls:
        at = events.index(call)
        follower = events[at + 1]
        assert isinstance(follower, JobStatusChanged) and follower.entity_id == call.call_id

    progress = [e for e in events if isinstance(e, TaskProgress)]
    assert [(p.entity_id, p.previous_completed, p.completed, p.total) for p in progress] == [
        (GROUP, 0, 1, 5),
        (GROUP, 1, 2, 5),
        (GROUP, 2, 3, 5),
        (GROUP, 3, 4, 5),
    ]
    assert progress[-1].by_state == {"cancelled": 1, "completed": 1, "failed": 2, "pending": 1}
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.vendor == "alibaba-outboundbot" and e.account == "ob-main" for e in events)
    assert sim.log.count("throttled") == 0


async def test_aiccs_scripted_changes_give_exactly_those_events(nats_server: NatsServer) -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, seed=5) as sim:
        tasks = [sim.add_task(f"任务 {n}", total=10) for n in range(4)]  # 2 pages of 3
        config = make_config(nats_server.url, [aiccs_source(sim, signature="v1")])
        script: list[tuple[int, str | None, int | None]] = [
            (0, "RELEASE", None),
            (0, "RUNNING", None),
            (0, None, 4),
            (1, "RUNNING", 2),
            (1, "SYSTEM_STOP", None),
            (0, "DONE", 10),
            (2, "SYSTEM_CANCEL", None),
            (3, "CANCEL", None),
        ]
        async with running(config) as service:
            await polls_done(service, 1)
            for index, status, complete in script:
                sim.set_task(tasks[index], status=status, complete=complete)
                await polls_done(service, 2)
            added = sim.add_task("新任务", total=3)
            await polls_done(service, 2)
            sim.remove_task(tasks[3])
            await polls_done(service, 2)
        events = await stream_events(nats_server.url)

    kinds = Counter(type(e).__name__ for e in events)
    assert kinds == {"TaskAppeared": 5, "TaskStatusChanged": 7, "TaskProgress": 3, "TaskVanished": 1}
    appeared = [e for e in events if isinstance(e, TaskAppeared)]
    assert [e.entity_id for e in appeared] == [str(t) for t in [*tasks, added]]
    assert all(e.current.raw == "INIT" and e.current.state is TaskState.PENDING for e in appeared)
    assert (appeared[0].completed, appeared[0].total, appeared[0].name) == (0, 10, "任务 0")

    changes = [e for e in events if isinstance(e, TaskStatusChanged)]
    assert [(e.entity_id, e.previous.raw, e.current.raw, e.current.state) for e in changes] == [
        (str(tasks[0]), "INIT", "RELEASE", TaskState.PENDING),
        (str(tasks[0]), "RELEASE", "RUNNING", TaskState.RUNNING),
        (str(tasks[1]), "INIT", "RUNNING", TaskState.RUNNING),
        (str(tasks[1]), "RUNNING", "SYSTEM_STOP", TaskState.PAUSED_BY_SYSTEM),
        (str(tasks[0]), "RUNNING", "DONE", TaskState.COMPLETED),
        (str(tasks[2]), "INIT", "SYSTEM_CANCEL", TaskState.CANCELLED_BY_SYSTEM),
        (str(tasks[3]), "INIT", "CANCEL", TaskState.CANCELLED),
    ]
    progress = [e for e in events if isinstance(e, TaskProgress)]
    assert [(p.entity_id, p.previous_completed, p.completed, p.total) for p in progress] == [
        (str(tasks[0]), 0, 4, 10),
        (str(tasks[1]), 0, 2, 10),
        (str(tasks[0]), 4, 10, 10),
    ]
    (vanished,) = [e for e in events if isinstance(e, TaskVanished)]
    assert vanished.entity_id == str(tasks[3]) and vanished.previous.raw == "CANCEL"
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.vendor == "alibaba-aiccs" and e.account == "aiccs-main" for e in events)
    assert sim.log.count("throttled") == 0


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3-default", "v1"])
async def test_official_aiccs_sdk_pages_task_details_from_the_simulator(algorithm: str | None) -> None:
    async with AiccsSimulator(credentials={AK: SECRET}) as sim:
        task = sim.add_task(status="RUNNING", total=3)
        heard = sim.call(task, status_code=("200000", "用户听完语音"), duration=33)
        busy = sim.call(task, status_code=("200002", "用户占线"))

        def pages() -> list[Any]:
            client = AiccsClient(_config(sim, SECRET, algorithm))
            return [
                client.list_task_detail(
                    aiccs_models.ListTaskDetailRequest(task_id=task, page_no=n, page_size=2)
                ).body
                for n in (1, 2)
            ]

        first, second = await asyncio.to_thread(pages)
    assert (first.success, first.data.total, second.data.page_no) == (True, 3, 2)
    records = first.data.record + second.data.record
    got = [(r.id, r.status, r.status_code, r.duration) for r in records]
    assert got[:2] == [(heard.Id, "SUCCESS", "200000", 33), (busy.Id, "FAIL", "200002", 0)]
    assert got[2][1:3] == ("INIT", None)
    assert records[0].end_time == heard.EndTime and len(records[0].end_time) == len("2026-01-01 00:00:00")


def test_aiccs_attempt_outcomes_normalize_with_the_raw_status_kept() -> None:
    from datetime import timedelta, timezone

    from poller.vendors.alibaba_aiccs import call_snapshot
    from poller.vendors.normalize import UnreadableValues
    from schemas import CallOutcome
    from schemas.vendors.alibaba import TaskDetailRecord

    beijing = timezone(timedelta(hours=8))
    unreadable = UnreadableValues("alibaba-aiccs", "test")
    record = TaskDetailRecord(
        Id=7, Status="FAIL", StatusCode="200011", StatusCodeDesc="停机", EndTime="2026-12-01 10:00:00"
    )
    call = call_snapshot(record, "42", beijing, unreadable)
    assert (call.outcome, call.raw_outcome, call.failure_reason) == (
        CallOutcome.SUSPENDED_LINE,
        "FAIL/200011",
        "停机",
    )
    assert call.ended_at == "2026-12-01T10:00:00+08:00" and call.call_id == "7.0"
    retried = call_snapshot(
        TaskDetailRecord(Id=7, Status="SUCCESS", StatusCode="200000", RetryCurTimes=1),
        "42",
        beijing,
        unreadable,
    )
    assert retried.call_id == "7.1" and retried.outcome is CallOutcome.ANSWERED
    odd = call_snapshot(TaskDetailRecord(Id=8, Status="FAIL", StatusCode="299999"), "42", beijing, unreadable)
    assert odd.outcome is CallOutcome.UNKNOWN and odd.raw_outcome == "FAIL/299999"


@pytest.mark.parametrize("stringly", [False, True], ids=["typed", "stringly"])
async def test_aiccs_adapter_pages_details_of_running_tasks_only(stringly: bool) -> None:
    async with AiccsSimulator(credentials={AK: SECRET}, stringly=stringly) as sim:
        running_task = sim.add_task(status="RUNNING", total=7)
        attempts = [sim.call(running_task, duration=10 + n) for n in range(5)]
        never_started = sim.add_task(status="READY", total=3)
        async with adapters(aiccs_source(sim, detail_page_size=2)) as (source,):
            observation = await source.observe(SourceState())
    assert {c.call_id for c in observation.calls} == {f"{a.Id}.0" for a in attempts}
    assert {c.task_id for c in observation.calls} == {str(running_task)}
    assert sorted(c.duration_seconds or 0 for c in observation.calls) == sorted(
        a.Duration or 0 for a in attempts
    )
    assert sim.log.count(api="ListTaskDetail") == 4  # 7 callees, 2 a page; none for the READY task
    assert str(never_started) in {e.id for e in observation.entities}
