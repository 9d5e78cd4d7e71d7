"""Alibaba Cloud OutboundBot 2019-12-26: ``ListJobsByGroup`` per configured (instance, job group).

Each job is one callee: it becomes a JOB entity whose terminal Succeeded/Failed status carries the
finished call (outcome from ``FailureReason``). The job group itself becomes a JOB_GROUP entity with
jobs counted per normalized state and terminal/all as progress. ``ListJobsByGroup`` does not return
the group's own status, so the group's state is derived from its jobs (completed once every job is
terminal, otherwise running; pending while empty) and its raw value is empty: only progress events
come from it, never a status change that the vendor did not report.

Reads follow what can change (see :mod:`poller.vendors.informer`): once the group is known, each
cycle lists only the jobs in a live status (``ListJobsByGroup`` with ``JobStatus``, one per live
status), re-reads by id (``ListJobs``) the live jobs those lists did not return (they finished or
moved while the lists were read), and reads a few pages of a full relist that is spread over the
cycles. Only the relist's complete passes can vanish a job or update the group's progress.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import Counter
from collections.abc import Mapping
from typing import Annotated

import anyio
import msgspec

from poller.errors import BadResponse, TooLarge
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation, PageSink
from poller.pipeline.state import SourceState
from poller.transport import Response
from poller.vendors.alibaba_common import AlibabaAccount, RpcSigner, call_rpc, check_envelope, classifier
from poller.vendors.base import AdapterContext, NonEmpty, Source, Vendor, decode_or_bad
from poller.vendors.informer import ReadKind, RelistPass
from poller.vendors.listing import Listing, sweep_pages
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
    max_staleness: Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)] = 300.0

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
        #: the last sweep's total: the next sweep requests every page at once
        self._last_total: int | None = None
        #: the last total of each live status's filtered listing (same use)
        self._status_totals: dict[str, int] = {}
        self._classify = classifier(LIST_API)
        self._classify_by_id = classifier(LIST_JOBS_API)
        self._relist = RelistPass(1, config.max_staleness)
        #: jobs last read in a live status: what the targeted reads must account for
        self._live: set[str] | None = None
        #: how long the last round of targeted reads took: the relist paces its pass by it
        self._round_seconds = 1.0

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

        page = await call_rpc(self, self.signer, self._limiter, parse, LIST_API, request)
        limit = self.config.max_entities
        if page.TotalCount > limit:
            # every read of the listing (relist slices, status lists, full sweeps) is sized by this
            # total: the vendor's word, so it is bounded before anything trusts it
            raise TooLarge(
                f"the vendor reports {page.TotalCount} jobs, more than max_entities = {limit}", api=LIST_API
            )
        return page

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

    def _note(self, snapshots: list[EntitySnapshot]) -> None:
        live = self._live
        if live is None:
            return
        for snap in snapshots:
            if snap.raw_state in LIVE_STATUSES:
                live.add(snap.id)
            else:
                live.discard(snap.id)

    def _report(self, requests: dict[str, int]) -> None:
        observe = self.ctx.observe_reads
        if observe is not None:
            observe(
                self.vendor, self.account, self.scope, requests=requests, staleness=self._relist.staleness()
            )

    def _targeted_estimate(self, live: int) -> int:
        size = self.cfg.page_size
        if self._status_totals:
            return sum(max(1, -(-self._status_totals.get(s, 0) // size)) for s in LIVE_STATUSES)
        return len(LIVE_STATUSES) + math.ceil(live / size)

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)
        if self._live is None:
            job = EntityKind.JOB.value
            self._live = {
                entity_id
                for entity_id, entity in committed.entities.items()
                if entity.kind == job and entity.raw in LIVE_STATUSES
            }
        full_pages = -(-(self._last_total or 0) // self.cfg.page_size)
        targeted = self._targeted_estimate(len(self._live))
        follow = (
            self.cfg.targeted_reads
            and bool(committed.entities)
            and self._last_total is not None
            and 2 * targeted < full_pages
        )
        if not follow:
            observation = await self._full_sweep(listing)
            self._report({ReadKind.FULL: full_pages or 1})
        else:
            observation = await self._follow(listing, targeted)
        return observation

    async def _full_sweep(self, listing: Listing) -> Observation:
        started = self._relist.clock()

        async def page(number: int) -> int:
            jobs = await self._page(number)
            snaps = [job_entity(job, self.job_group_id) for job in jobs.List]
            self._note(snaps)
            await listing.add(snaps)
            return jobs.TotalCount

        sweep = await sweep_pages(
            1,
            self.cfg.page_size,
            page,
            lambda total: total,
            self._limiter.limit,
            self._last_total,
            max_total=self.config.max_entities,
            api=LIST_API,
        )
        self._last_total = sweep.total
        complete = sweep.totals_agree and len(listing) == sweep.total
        if complete:
            self._relist.full_sweep(started)
        return self._observation(listing.snapshots(), complete)

    def _observation(self, jobs: list[EntitySnapshot], complete: bool) -> Observation:
        entities = list(jobs)
        if complete:
            # counts over a partial listing would be wrong progress: the group waits for a full one
            entities.append(group_entity(self.job_group_id, self.cfg.instance_id, jobs))
        return Observation(entities=entities, complete=complete)

    async def _follow(self, listing: Listing, targeted: int) -> Observation:
        """Rounds of reads that follow what can change, until the relist pass ends or the cycle does."""
        counts = {ReadKind.RELIST: 0, ReadKind.TARGETED: 0, ReadKind.BY_ID: 0}
        relist, size = self._relist, self.cfg.page_size
        for _ in range(ROUNDS_PER_CYCLE):
            round_started = time.monotonic()
            await self._round(listing, targeted, counts)
            self._round_seconds = time.monotonic() - round_started
            if relist.done(size):
                break
            targeted = self._targeted_estimate(0)
        self._report(counts)
        observation = (
            self._observation(*relist.finish())
            if relist.done(size)
            else Observation(entities=listing.snapshots(), complete=False)
        )
        return observation

    async def _round(self, listing: Listing, targeted: int, counts: dict[str, int]) -> None:
        """One round: a relist slice and the live lists side by side, then the leavers by id."""
        relist, size = self._relist, self.cfg.page_size
        count = relist.plan(size, targeted, self._limiter.per_sharer(), self._round_seconds)

        # 1. a slice of the relist and every live status's filtered listing, side by side; each
        # page is applied as it arrives, so of two reads of one job the later one wins
        slice_numbers = relist.numbers(count)
        numbers = iter(slice_numbers)
        seen: set[str] = set()

        async def relist_worker() -> None:
            for number in numbers:
                page = await self._page(number)
                counts[ReadKind.RELIST] += 1
                snaps = [job_entity(job, self.job_group_id) for job in page.List]
                relist.listed_page(snaps, page.TotalCount)
                self._last_total = page.TotalCount
                self._note(snaps)
                await listing.add(snaps)

        async def status_list(status: str) -> None:
            async def page(number: int) -> int:
                jobs = await self._page(number, status)
                counts[ReadKind.TARGETED] += 1
                snaps = [job_entity(job, self.job_group_id) for job in jobs.List]
                seen.update(snap.id for snap in snaps)
                relist.read(snaps)
                self._note(snaps)
                await listing.add(snaps)
                return jobs.TotalCount

            sweep = await sweep_pages(
                1,
                size,
                page,
                lambda total: total,
                self._limiter.limit,
                self._status_totals.get(status),
                max_total=self.config.max_entities,
                api=LIST_API,
            )
            self._status_totals[status] = sweep.total

        try:
            async with anyio.create_task_group() as tg:
                for _ in range(min(count, self._limiter.limit)):
                    tg.start_soon(relist_worker)
                for status in LIVE_STATUSES:
                    tg.start_soon(status_list, status)
        except BaseException:
            # the slice is read again next cycle: a failed cycle leaves no page of the pass unread
            relist.next_number = min(relist.next_number, slice_numbers.start)
            raise

        # 2. live jobs none of those lists returned: they left a live status (or moved while paging)
        assert self._live is not None
        leavers = sorted(self._live - seen)
        batches = iter(
            [leavers[i : i + LIST_JOBS_MAX_IDS] for i in range(0, len(leavers), LIST_JOBS_MAX_IDS)]
        )

        async def by_id_worker() -> None:
            for batch in batches:
                jobs = await self._jobs_by_id(batch)
                counts[ReadKind.BY_ID] += 1
                wanted = set(batch)
                snaps = [job_entity(job, self.job_group_id) for job in jobs if job.JobId in wanted]
                relist.read(snaps)
                self._note(snaps)
                await listing.add(snaps)

        async with anyio.create_task_group() as tg:
            for _ in range(min(-(-len(leavers) // LIST_JOBS_MAX_IDS), self._by_id_limiter.limit)):
                tg.start_soon(by_id_worker)
        # a job no read returned is no longer followed here; only the relist may find it gone
        self._live.difference_update(job_id for job_id in leavers if job_id not in listing)


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
