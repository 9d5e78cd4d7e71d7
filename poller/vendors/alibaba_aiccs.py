"""Alibaba Cloud AICCS 2019-10-15: ``ListTask`` per account, pages from 1 (``PageNo``/``PageSize``),
and ``ListTaskDetail`` per task that is running or just finished, for its finished calls.

The documented limit is 500 requests per second for the API as a whole ("单用户不限流", but the sum
over all users is flow-controlled), so every AICCS account this poller watches shares one limiter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated

import anyio
import msgspec

from poller.errors import BadResponse
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation, PageSink
from poller.pipeline.state import VANISHED, SourceState
from poller.transport import FLEET_WIDE, Response
from poller.vendors.alibaba_common import AlibabaAccount, RpcSigner, call_rpc, check_envelope, classifier
from poller.vendors.base import AdapterContext, Source, Vendor, decode_or_bad
from poller.vendors.emitted import EmittedCalls
from poller.vendors.listing import Listing, SeenItems, sweep_pages
from poller.vendors.normalize import outcome_map, state_map
from schemas import CallOutcome, EntityKind, TaskState
from schemas.vendors.alibaba import (
    ListTaskDetailRequest,
    ListTaskDetailResponse,
    ListTaskRawResponse,
    ListTaskRequest,
    ListTaskResponse,
    TaskDetailPage,
    TaskDetailRecord,
    TaskPage,
    TaskRawPage,
    TaskRecord,
    decoder,
)

log = logging.getLogger("poller.vendors.alibaba_aiccs")

VENDOR = "alibaba-aiccs"
VERSION = "2019-10-15"
LIST_API = "ListTask"
DETAIL_API = "ListTaskDetail"
#: API-wide across all users (doc: "API 频率:500 次/秒")
DEFAULT_LIMIT = 500
#: the limiter key: the limit is not per credential
API_WIDE = FLEET_WIDE
#: the product's endpoint rule is "central" in the official SDK
DEFAULT_ENDPOINT = "https://aiccs.aliyuncs.com"

STATES = state_map(
    VENDOR,
    {
        "INIT": TaskState.PENDING,  # 未开始
        "RELEASE": TaskState.PENDING,  # 解析中
        "READY": TaskState.PENDING,  # 待执行
        "RUNNING": TaskState.RUNNING,  # 执行中
        "STOP": TaskState.PAUSED,  # 手动暂停
        "SYSTEM_STOP": TaskState.PAUSED_BY_SYSTEM,  # 系统暂停
        "CANCEL": TaskState.CANCELLED,  # 手动终止
        "SYSTEM_CANCEL": TaskState.CANCELLED_BY_SYSTEM,  # 系统终止
        "DONE": TaskState.COMPLETED,  # 已完成
    },
    field="Record.Status",
)


#: ListTaskDetail ``StatusCode`` (Voice Messaging call status codes); ``Status`` INIT is no call yet
OUTCOMES = outcome_map(
    VENDOR,
    {
        "200000": CallOutcome.ANSWERED,  # heard the whole message
        "200001": CallOutcome.ANSWERED,  # hung up before the end
        "200002": CallOutcome.BUSY,
        "200003": CallOutcome.NO_ANSWER,  # rang, not answered
        "200004": CallOutcome.INVALID_NUMBER,
        "200005": CallOutcome.REJECTED,  # unreachable: carrier problem or the callee refused
        "200006": CallOutcome.FAILED,  # the audio could not be played
        "200007": CallOutcome.POWERED_OFF,  # out of coverage
        "200008": CallOutcome.ANSWERED,  # answered, key press timed out
        "200010": CallOutcome.POWERED_OFF,
        "200011": CallOutcome.SUSPENDED_LINE,
        "200104": CallOutcome.CALLER_NUMBER_UNAVAILABLE,  # the calling number is restricted
        "200117": CallOutcome.CALLER_NUMBER_UNAVAILABLE,  # the display number is not allowed
        "200118": CallOutcome.FAILED,  # the carrier restricts calls at this time
        "200121": CallOutcome.FAILED,  # over the concurrency limit
    },
    field="Record.StatusCode",
)
#: a detail that has had an attempt
CALLED = frozenset({"SUCCESS", "FAIL"})
#: task states whose callees are still being called
_CALLING = frozenset({TaskState.RUNNING, TaskState.PAUSED, TaskState.PAUSED_BY_SYSTEM, TaskState.STOPPING})
#: committed cursors per task: every attempt that ended at or before this Unix second is published,
#: and the Unix second the task was first seen finished (it is read until the cursor passes it)
ENDED_CURSOR = "calls_until.{}"
#: seconds an attempt's end may lie ahead of our clock
_SKEW = 300
FINISHED_CURSOR = "task_finished.{}"
#: the mark of the last cycle's observation (see :class:`poller.vendors.emitted.EmittedCalls`)
CYCLE_CURSOR = "calls.cycle"


class AiccsAccount(AlibabaAccount, frozen=True, kw_only=True):
    """One Alibaba Cloud account's robot call tasks."""

    #: the doc's default page size; the maximum is not published
    page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    #: ListTaskDetail page size (doc default 20; the maximum is not published)
    detail_page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    #: read every called callee's outcome of tasks that are running or just finished
    calls: bool = True
    #: minutes east of UTC of the vendor's "YYYY-MM-DD HH:mm:ss" times (Beijing)
    utc_offset_minutes: int = 480
    #: seconds: attempts ending this close to the newest one seen may not be listed yet, so they are
    #: read again (the same event id: JetStream drops the copy)
    calls_settle: float = 60.0
    #: a task claiming more callees than this is a bad answer, not 1000s of pages
    max_task_details: int = 1000000

    def default_endpoint(self) -> str:
        return DEFAULT_ENDPOINT


_decode_list = decoder(ListTaskResponse)
_decode_raw_list = decoder(ListTaskRawResponse)
_decode_record = decoder(TaskRecord)
_decode_detail = decoder(ListTaskDetailResponse)


def vendor_time(text: str | None, tz: timezone) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError:
        return None


def call_snapshot(record: TaskDetailRecord, task_id: str, tz: timezone) -> CallSnapshot:
    """One attempt of one callee: the detail id and the retry count name it, so a retried callee
    gives a new call and a re-read of the same attempt the same one."""
    raw = record.StatusCode or record.Status
    outcome = OUTCOMES.normalize(raw) if record.StatusCode else CallOutcome.UNKNOWN
    started, ended = vendor_time(record.StartTime, tz), vendor_time(record.EndTime, tz)
    attempt = record.RetryCurTimes or 0
    duration = record.Duration if record.Duration is not None and record.Duration >= 0 else None
    return CallSnapshot(
        call_id=f"{record.Id}.{attempt}",
        task_id=task_id,
        outcome=outcome,
        raw_outcome=f"{record.Status}/{raw}",
        failure_reason=None if outcome is CallOutcome.ANSWERED else (record.StatusCodeDesc or None),
        callee_number=record.Called or None,
        caller_number=record.Caller or None,
        duration_seconds=duration,
        talk_seconds=duration,
        started_at=started.isoformat() if started else None,
        ended_at=ended.isoformat() if ended else None,
        vendor_call_id=str(record.Id),
    )


def read_detail_page(resp: Response) -> TaskDetailPage:
    answer: ListTaskDetailResponse = decode_or_bad(_decode_detail, resp.body, DETAIL_API)
    check_envelope(
        DETAIL_API, success=answer.Success, code=answer.Code, message=answer.Message, http_status=None
    )
    if answer.Data is None:
        raise BadResponse("answer without Data", api=DETAIL_API)
    return answer.Data


def task_entity(record: TaskRecord) -> EntitySnapshot:
    return EntitySnapshot(
        kind=EntityKind.TASK,
        id=str(record.Id),
        name=record.TaskName,
        state=STATES.normalize(record.Status),
        raw_state=record.Status,
        completed=record.CompleteCount,
        total=record.TotalCount,
    )


def read_task_page(resp: Response) -> TaskPage:
    """A classified 200 answer → its page of tasks, or a SourceError (the cycle fails as a whole)."""
    answer: ListTaskResponse = decode_or_bad(_decode_list, resp.body, LIST_API)
    check_envelope(
        LIST_API, success=answer.Success, code=answer.Code, message=answer.Message, http_status=None
    )
    if answer.Data is None:
        raise BadResponse("answer without Data", api=LIST_API)
    return answer.Data


def read_task_raw_page(resp: Response) -> TaskRawPage:
    """``read_task_page``, each record left as raw JSON (see :class:`~poller.vendors.listing.SeenItems`)."""
    answer: ListTaskRawResponse = decode_or_bad(_decode_raw_list, resp.body, LIST_API)
    check_envelope(
        LIST_API, success=answer.Success, code=answer.Code, message=answer.Message, http_status=None
    )
    if answer.Data is None:
        raise BadResponse("answer without Data", api=LIST_API)
    return answer.Data


def decode_record(raw: msgspec.Raw) -> TaskRecord:
    """One record of a raw page, decoded when its bytes changed."""
    record: TaskRecord = decode_or_bad(_decode_record, raw, LIST_API)
    return record


class AiccsSource(Source):
    """The account's tasks, and the finished calls of those that are running or just finished.

    ``ListTaskDetail`` has no time filter, so a followed task's details are paged in full each cycle
    and a committed per-task cursor (``calls_settle`` seconds behind the clock) says which attempts
    are new; attempts re-read in that margin and already published are not handed out again. Tasks
    that cannot place calls any more are not read at all, which keeps the reads within the 500/s
    that ListTask and ListTaskDetail share across all users.
    """

    vendor = VENDOR
    reuses_snapshots = True

    def __init__(self, config: AiccsAccount, ctx: AdapterContext) -> None:
        super().__init__(config, ctx)
        self.cfg = config
        self.signer = RpcSigner(
            endpoint=config.endpoint or config.default_endpoint(),
            version=VERSION,
            access_key_id=config.access_key_id,
            access_key_secret=config.access_key_secret,
            signature=config.signature,
        )
        # one API-wide budget for both actions
        self._limiter = self.limiter(LIST_API, API_WIDE, DEFAULT_LIMIT)
        #: the last sweep's total: the next sweep requests every page at once
        self._last_total: int | None = None
        self._classify = classifier(LIST_API)
        self._classify_detail = classifier(DETAIL_API)
        self._seen = SeenItems()
        self.tz = timezone(timedelta(minutes=config.utc_offset_minutes))
        #: attempts of the re-read margin already published, not handed out again
        self._emitted = EmittedCalls(CYCLE_CURSOR)

    @property
    def apis(self) -> tuple[str, ...]:
        return (LIST_API, DETAIL_API) if self.cfg.calls else (LIST_API,)

    async def _page(self, number: int) -> TaskRawPage:
        request = ListTaskRequest(PageNo=number, PageSize=self.cfg.page_size)
        classify = self._classify

        def parse(resp: Response) -> TaskRawPage:
            classify(resp)
            return read_task_raw_page(resp)

        return await call_rpc(self, self.signer, self._limiter, parse, LIST_API, request)

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)

        def build(raw: msgspec.Raw) -> EntitySnapshot:
            return task_entity(decode_record(raw))

        async def page(number: int) -> int:
            tasks = await self._page(number)
            await listing.add(self._seen.snapshots(tasks.Record, build))
            return tasks.Total

        try:
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
        except BaseException:
            self._seen.end_sweep(complete=False)
            raise
        self._last_total = sweep.total
        complete = sweep.totals_agree and len(listing) == sweep.total
        self._seen.end_sweep(complete)
        entities = listing.snapshots()
        if not self.cfg.calls:
            return Observation(entities=entities, complete=complete)
        calls, cursors = await self._calls(entities, committed)
        return Observation(entities=entities, complete=complete, calls=calls, cursors=cursors)

    # -- calls --------------------------------------------------------------------------------------
    async def _details(self, task_id: int) -> tuple[list[TaskDetailRecord], bool]:
        size = self.cfg.detail_page_size
        classify = self._classify_detail

        def parse(resp: Response) -> TaskDetailPage:
            classify(resp)
            return read_detail_page(resp)

        async def fetch(number: int) -> TaskDetailPage:
            request = ListTaskDetailRequest(TaskId=task_id, PageNo=number, PageSize=size)
            return await call_rpc(self, self.signer, self._limiter, parse, DETAIL_API, request)

        def total_of(page: TaskDetailPage) -> int:
            if not 0 <= page.Total <= self.cfg.max_task_details:
                raise BadResponse(
                    f"Total {page.Total} outside 0..{self.cfg.max_task_details} (max_task_details)",
                    api=DETAIL_API,
                )
            return page.Total

        sweep = await sweep_pages(
            1, size, fetch, total_of, self._limiter.limit, max_total=self.cfg.max_task_details, api=DETAIL_API
        )
        records: dict[int, TaskDetailRecord] = {}
        for page in sweep.pages:
            for record in page.Record:
                records[record.Id] = record
        return list(records.values()), sweep.totals_agree and len(records) == sweep.total

    async def _calls(
        self, entities: list[EntitySnapshot], committed: SourceState
    ) -> tuple[list[CallSnapshot], dict[str, int]]:
        now = int(time.time())
        settle = max(1, int(self.cfg.calls_settle))
        cursors: dict[str, int] = {}
        followed: list[str] = []
        for snap in entities:
            if snap.state in _CALLING:
                followed.append(snap.id)
                continue
            if not snap.state.terminal:
                continue  # not started: no call yet
            key = FINISHED_CURSOR.format(snap.id)
            finished = committed.cursors.get(key)
            if finished is None:
                old = committed.entities.get(snap.id)
                if old is None or old.state == VANISHED or TaskState(old.state).terminal:
                    # first seen finished (say, the first cycle): its calls are read this once
                    cursors[key] = now - settle - 1
                    followed.append(snap.id)
                    continue
                finished = cursors[key] = now
            if now - finished <= settle:
                followed.append(snap.id)  # just finished: its last attempts may still be listed
        calls: list[CallSnapshot] = []
        impossible: list[int] = []

        prefix = ENDED_CURSOR.format("")
        published_until = {
            k.removeprefix(prefix): v for k, v in committed.cursors.items() if k.startswith(prefix)
        }
        emitted = self._emitted
        # an attempt ending at or before every followed task's cursor can no longer come back as new
        emitted.begin(committed.cursors, min((published_until.get(t, -1) for t in followed), default=now))

        async def follow(task_id: str) -> None:
            records, whole = await self._details(int(task_id))
            until = published_until.get(task_id, -1)
            for record in records:
                if record.Status not in CALLED:
                    continue
                ended = vendor_time(record.EndTime, self.tz)
                if ended is None:
                    continue  # an attempt without its end is not finished yet as far as we can tell
                end = int(ended.timestamp())
                if end > now + _SKEW:
                    impossible.append(record.Id)  # "ending" in the future: new on every cycle
                    continue
                if end > until:
                    call = call_snapshot(record, task_id, self.tz)
                    if not emitted.published(call.call_id):
                        calls.append(call)
                        emitted.handed_out(call.call_id, end)
            if whole:
                # the cursor follows the clock, not the newest attempt, so a task that goes quiet
                # does not keep its last attempts in the margin for ever; a listing that did not page
                # consistently is read again from the same cursor
                cursors[ENDED_CURSOR.format(task_id)] = max(until, now - settle)

        slots = anyio.CapacityLimiter(self._limiter.limit)

        async def bounded(task_id: str) -> None:
            async with slots:
                await follow(task_id)

        async with anyio.create_task_group() as tg:
            for task_id in followed:
                tg.start_soon(bounded, task_id)
        cursors.update(emitted.mark())
        if impossible:
            log.warning(
                "task details with an impossible end time left out",
                extra={
                    "vendor": VENDOR,
                    "account": self.account,
                    "api": DETAIL_API,
                    "count": len(impossible),
                },
            )
        return calls, cursors


def build_sources(config: AiccsAccount, ctx: AdapterContext) -> list[Source]:
    return [AiccsSource(config, ctx)]


#: ListTaskDetail shares ListTask's API-wide budget (its own limit is not published)
APIS: Mapping[str, int] = {LIST_API: DEFAULT_LIMIT, DETAIL_API: DEFAULT_LIMIT}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=AiccsAccount,
    sources=build_sources,
    apis=APIS,
    fleet_apis=frozenset({LIST_API}),
    doc="Alibaba Cloud AICCS ListTask and ListTaskDetail (V3 or V1 signature, 500 req/s API-wide "
    "shared by both, pages from 1)",
)
