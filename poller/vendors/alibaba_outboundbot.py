"""Alibaba Cloud OutboundBot 2019-12-26: ``ListJobsByGroup`` per configured (instance, job group).

Each job is one callee: it becomes a JOB entity whose terminal Succeeded/Failed status carries the
finished call (outcome from ``FailureReason``). The job group itself becomes a JOB_GROUP entity with
jobs counted per normalized state and terminal/all as progress. ``ListJobsByGroup`` does not return
the group's own status, so the group's state is derived from its jobs (completed once every job is
terminal, otherwise running; pending while empty) and its raw value is empty: only progress events
come from it, never a status change that the vendor did not report.

Reads follow what can change (see :mod:`poller.vendors.informer`): once the group is known and a
full listing takes more than a window's share, each cycle lists only the jobs in a live status
(``ListJobsByGroup`` with ``JobStatus``, one per live status), re-reads by id (``ListJobs``) the
live jobs those lists did not return (they finished or moved while the lists were read), and reads
a few pages of a full relist that is spread over the cycles. Only the relist's complete passes can
vanish a job or update the group's progress.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Mapping
from typing import Annotated

import msgspec

from poller.errors import BadResponse
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation, PageSink
from poller.pipeline.state import SourceState
from poller.transport import Response
from poller.vendors.alibaba_common import AlibabaAccount, RpcSigner, call_rpc, check_envelope, classifier
from poller.vendors.base import AdapterContext, NonEmpty, Source, Vendor, decode_or_bad
from poller.vendors.informer import Informer, ListedPage, MaxStaleness, ReadByIds
from poller.vendors.listing import Listing
from poller.vendors.normalize import outcome_map, state_map
from schemas import CallOutcome, EntityKind, TaskState
from schemas.vendors.alibaba import (
    Job,
    JobPage,
    ListJobsByGroupRequest,
    ListJobsByGroupResponse,
    ListJobsResponse,
    decoder,
)

log = logging.getLogger("poller.vendors.alibaba_outboundbot")

VENDOR = "alibaba-outboundbot"
VERSION = "2019-12-26"
LIST_API = "ListJobsByGroup"
#: jobs by id (``JobId.N``); the SDK documents at most 99 ids per request
LIST_JOBS_API = "ListJobs"
LIST_JOBS_MAX_IDS = 99
#: the statuses from which a job can still move on its own (the others change only when restarted)
LIVE_STATUSES = ("Scheduling", "Executing", "Paused", "Drafted")
#: rounds of targeted reads in one cycle: each page is published as it is read, so a live change
#: waits for its round (about one window), while the work a cycle does on the whole state (the
#: differ's map copy, the commit) is paid once per this many rounds
ROUNDS_PER_CYCLE = 6
#: the QPS of ListJobsByGroup is not published; 100/s is a conservative default, override per account
DEFAULT_LIMIT = 100

JOB_STATES = state_map(
    VENDOR,
    {
        "Scheduling": TaskState.PENDING,  # 0 调度中
        "Executing": TaskState.RUNNING,  # 1 执行中
        "Succeeded": TaskState.COMPLETED,  # 2 结束-已触达
        "Paused": TaskState.PAUSED,  # 3 暂停
        "Failed": TaskState.FAILED,  # 4 结束-未触达
        "Cancelled": TaskState.CANCELLED,  # 5 已取消-人工干预
        "Drafted": TaskState.PENDING,  # 6 草稿态
    },
    field="Job.Status",
)

#: Job.FailureReason values from the SDK's field docs (ListJobsByGroup, QueryJobs) and the call
#: statuses of the same product (QueryJobs task Status / CreateTaskExportTask), plus spellings seen
#: in other Alibaba call products. Reasons for which no call was placed (limits, block list, strategy
#: problems, pre-call verification) are ``failed``: the raw value stays in ``failure_reason``.
FAILURE_REASONS = outcome_map(
    VENDOR,
    {
        "NoAnswer": CallOutcome.NO_ANSWER,
        "NotAnswered": CallOutcome.NO_ANSWER,
        "Busy": CallOutcome.BUSY,
        "PoweredOff": CallOutcome.POWERED_OFF,
        "PowerOff": CallOutcome.POWERED_OFF,
        "EmptyNumber": CallOutcome.INVALID_NUMBER,  # 空号
        "NotExist": CallOutcome.INVALID_NUMBER,
        "NotExists": CallOutcome.INVALID_NUMBER,
        "DoesNotExist": CallOutcome.INVALID_NUMBER,
        "InvalidNumber": CallOutcome.INVALID_NUMBER,
        "WrongNumber": CallOutcome.INVALID_NUMBER,
        "Vacant": CallOutcome.INVALID_NUMBER,
        "Rejected": CallOutcome.REJECTED,
        "Refused": CallOutcome.REJECTED,
        "OutOfService": CallOutcome.SUSPENDED_LINE,  # 停机
        "OutOfServiceNoCall": CallOutcome.SUSPENDED_LINE,
        "Suspended": CallOutcome.SUSPENDED_LINE,
        "ContactSuspended": CallOutcome.SUSPENDED_LINE,
        # QueryJobs documents InArrears as "callee overdue payment": the callee's line is cut off
        "InArrears": CallOutcome.SUSPENDED_LINE,
        "InArrearsNoCall": CallOutcome.SUSPENDED_LINE,
        "CallingNumberNotExist": CallOutcome.CALLER_NUMBER_UNAVAILABLE,
        "CallerNotRegistered": CallOutcome.CALLER_NUMBER_UNAVAILABLE,
        "NotConnected": CallOutcome.FAILED,  # 无法接通
        "CallFailed": CallOutcome.FAILED,
        "TimeUp": CallOutcome.FAILED,
        "InvalidStrategy": CallOutcome.FAILED,
        "NoStrategy": CallOutcome.FAILED,
        "PerDayCallCountLimit": CallOutcome.FAILED,
        "JobPerDayCallCountLimit": CallOutcome.FAILED,
        "ContactBlockList": CallOutcome.FAILED,
        "VerificationCancelled": CallOutcome.FAILED,
        "NoneRepeatableJobMaxAttemptCountLimit": CallOutcome.FAILED,
        "HighRiskSipCode": CallOutcome.FAILED,
        "Terminated": CallOutcome.FAILED,
        "Unknown": CallOutcome.UNKNOWN,
    },
    field="Job.FailureReason",
)

#: statuses whose job carries a finished call (Cancelled is terminal but no call was finished)
_CALL_STATUSES = frozenset({"Succeeded", "Failed"})


class OutboundBotAccount(AlibabaAccount, frozen=True, kw_only=True):
    """One OutboundBot instance and the job groups to watch in it (one source per job group)."""

    instance_id: NonEmpty
    job_group_ids: Annotated[list[NonEmpty], msgspec.Meta(min_length=1)]
    #: max PageSize of ListJobsByGroup is not published
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    #: read only the jobs that can still change each cycle, plus a relist spread over ``max_staleness``;
    #: false: every cycle is one full listing
    targeted_reads: bool = True
    #: seconds within which every job, finished ones too (the vendor may restart them), is read
    #: again: the targeted reads spread a full relist over this
    max_staleness: MaxStaleness = 300.0

    def default_endpoint(self) -> str:
        return f"https://outboundbot.{self.region}.aliyuncs.com"


_decode_list = decoder(ListJobsByGroupResponse)
_decode_jobs = decoder(ListJobsResponse)


def call_of(job: Job, job_group_id: str) -> CallSnapshot | None:
    """The finished call of a job in Succeeded/Failed; None for every other status."""
    if job.Status not in _CALL_STATUSES:
        return None
    contact = job.Contacts[0] if job.Contacts else None
    if job.Status == "Succeeded":
        outcome, raw, reason = CallOutcome.ANSWERED, "Succeeded", None
    else:
        reason = job.FailureReason or None
        outcome = FAILURE_REASONS.normalize(reason) if reason else CallOutcome.FAILED
        raw = reason or "Failed"
    # ListJobsByGroup's Job carries no call time or talk time (neither the API reference nor the SDK's
    # response model has one), so started_at, ended_at and duration_seconds stay null here
    return CallSnapshot(
        call_id=job.JobId,
        task_id=job_group_id,
        outcome=outcome,
        raw_outcome=raw,
        failure_reason=reason,
        callee_number=contact.PhoneNumber if contact else None,
        callee_name=contact.ContactName if contact else None,
        # ListJobsByGroup shows no attempt id: a job's call is told apart by how it ended
        attempt=raw,
    )


def read_jobs_page(resp: Response) -> JobPage:
    """A classified 200 answer → its page of jobs, or a SourceError (the cycle fails as a whole)."""
    answer: ListJobsByGroupResponse = decode_or_bad(_decode_list, resp.body, LIST_API)
    check_envelope(
        LIST_API,
        success=answer.Success,
        code=answer.Code,
        message=answer.Message,
        http_status=answer.HttpStatusCode,
    )
    if answer.Jobs is None:
        raise BadResponse("answer without Jobs", api=LIST_API)
    return answer.Jobs


def read_jobs_by_id(resp: Response) -> list[Job]:
    """A classified 200 ``ListJobs`` answer → the jobs it holds, or a SourceError."""
    answer: ListJobsResponse = decode_or_bad(_decode_jobs, resp.body, LIST_JOBS_API)
    check_envelope(
        LIST_JOBS_API,
        success=answer.Success,
        code=answer.Code,
        message=answer.Message,
        http_status=answer.HttpStatusCode,
    )
    if answer.Jobs is None:
        raise BadResponse("answer without Jobs", api=LIST_JOBS_API)
    return answer.Jobs


def job_entity(job: Job, job_group_id: str) -> EntitySnapshot:
    return EntitySnapshot(
        kind=EntityKind.JOB,
        id=job.JobId,
        parent_id=job_group_id,
        state=JOB_STATES.normalize(job.Status),
        raw_state=job.Status,
        call=call_of(job, job_group_id),
    )


_state_of = operator.attrgetter("state")


def group_entity(job_group_id: str, instance_id: str, jobs: list[EntitySnapshot]) -> EntitySnapshot:
    # counted in C (map + attrgetter): at 100k jobs a generator here held the event loop for 40 ms
    counts = Counter(map(_state_of, jobs))
    terminal = sum(n for state, n in counts.items() if state.terminal)
    by_state = {state.value: n for state, n in counts.items()}
    total = len(jobs)
    if total == 0:
        state = TaskState.PENDING
    else:
        state = TaskState.COMPLETED if terminal == total else TaskState.RUNNING
    return EntitySnapshot(
        kind=EntityKind.JOB_GROUP,
        id=job_group_id,
        parent_id=instance_id,
        state=state,
        raw_state="",
        completed=terminal,
        total=total,
        by_state=dict(sorted(by_state.items())),
        summary=True,
    )


class OutboundBotJobGroupSource(Source):
    """One job group of one OutboundBot instance."""

    vendor = VENDOR

    def __init__(self, config: OutboundBotAccount, ctx: AdapterContext, job_group_id: str) -> None:
        super().__init__(config, ctx, scope=job_group_id)
        self.cfg = config
        self.job_group_id = job_group_id
        self.signer = RpcSigner(
            endpoint=config.endpoint or config.default_endpoint(),
            version=VERSION,
            access_key_id=config.access_key_id,
            access_key_secret=config.access_key_secret,
            signature=config.signature,
        )
        self._limiter = self.limiter(LIST_API, config.access_key_id, DEFAULT_LIMIT)
        self._by_id_limiter = self.limiter(LIST_JOBS_API, config.access_key_id, DEFAULT_LIMIT)
        self._classify = classifier(LIST_API)
        self._classify_by_id = classifier(LIST_JOBS_API)
        self.informer = Informer(
            vendor=VENDOR,
            account=self.account,
            api=LIST_API,
            kind=EntityKind.JOB,
            live_statuses=LIVE_STATUSES,
            first_number=1,
            page_size=config.page_size,
            max_staleness=config.max_staleness,
            max_entities=config.max_entities,
            lists=self._limiter,
            by_id=self._by_id_limiter,
            by_id_batch=LIST_JOBS_MAX_IDS,
            rounds=ROUNDS_PER_CYCLE,
            enabled=config.targeted_reads,
            report=self.report_reads,
        )

    @property
    def apis(self) -> tuple[str, ...]:
        return (LIST_API, LIST_JOBS_API) if self.cfg.targeted_reads else (LIST_API,)

    async def _page(self, number: int, status: str | None = None) -> JobPage:
        request = ListJobsByGroupRequest(
            InstanceId=self.cfg.instance_id,
            JobGroupId=self.job_group_id,
            PageNumber=number,
            PageSize=self.cfg.page_size,
            JobStatus=status,
        )
        classify = self._classify

        def parse(resp: Response) -> JobPage:
            classify(resp)
            return read_jobs_page(resp)

        return await call_rpc(self, self.signer, self._limiter, parse, LIST_API, request)

    async def _jobs_by_id(self, job_ids: list[str]) -> list[Job]:
        params = {"InstanceId": self.cfg.instance_id}
        params.update({f"JobId.{n}": job_id for n, job_id in enumerate(job_ids, 1)})
        query, prepare = self.signer.request(LIST_JOBS_API, params)
        classify = self._classify_by_id

        def parse(resp: Response) -> list[Job]:
            classify(resp)
            return read_jobs_by_id(resp)

        return await self.send(
            LIST_JOBS_API,
            self._by_id_limiter,
            "POST",
            self.signer.url,
            parse=parse,
            prepare=prepare,
            params=query,
        )

    async def _read(self, number: int, status: str | None) -> ListedPage:
        page = await self._page(number, status)
        return ListedPage(
            snapshots=[job_entity(job, self.job_group_id) for job in page.List], total=page.TotalCount
        )

    async def _read_ids(self, job_ids: list[str]) -> ReadByIds:
        jobs = await self._jobs_by_id(job_ids)
        return ReadByIds(found=[job_entity(job, self.job_group_id) for job in jobs])

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)
        await self.informer.read(committed, listing, self._read, self._read_ids)
        jobs, complete = self.informer.end(listing.snapshots())
        entities = list(jobs)
        if complete:
            # counts over a partial listing would be wrong progress: the group waits for a full one
            entities.append(group_entity(self.job_group_id, self.cfg.instance_id, jobs))
        return Observation(entities=entities, complete=complete)


def build_sources(config: OutboundBotAccount, ctx: AdapterContext) -> list[Source]:
    return [OutboundBotJobGroupSource(config, ctx, group) for group in config.job_group_ids]


APIS: Mapping[str, int] = {LIST_API: DEFAULT_LIMIT, LIST_JOBS_API: DEFAULT_LIMIT}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=OutboundBotAccount,
    sources=build_sources,
    apis=APIS,
    doc="Alibaba Cloud OutboundBot ListJobsByGroup (V3 or V1 signature, pages from 1, limit configurable)",
)
