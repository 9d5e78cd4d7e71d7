"""Alibaba Cloud AICCS 2019-10-15: ``ListTask`` per account, pages from 1 (``PageNo``/``PageSize``),
and ``ListTaskDetail`` per task that is running or just finished, for its finished calls.

The documented limit is 500 requests per second for the API as a whole ("单用户不限流", but the sum
over all users is flow-controlled), so every AICCS account this poller watches shares one limiter.

Reads follow what can change (see :mod:`poller.vendors.informer`): once the account's tasks are
known and a full listing takes more than a window's share, each cycle lists only the tasks in a
live status (``ListTask`` with ``Status``, one exact status per listing), re-reads by ``TaskId``
the live tasks those lists did not return, and reads a slice of a full relist spread over
``max_staleness``. Only the relist's complete passes can vanish a task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated

import anyio
import msgspec

from poller.errors import BadResponse, ClientError, as_source_error
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation, PageSink
from poller.pipeline.state import VANISHED, SourceState
from poller.transport import FLEET_WIDE, Response
from poller.vendors.alibaba_common import AlibabaAccount, RpcSigner, call_rpc, check_envelope, classifier
from poller.vendors.base import AdapterContext, Source, Vendor, decode_or_bad
from poller.vendors.emitted import EmittedCalls
from poller.vendors.informer import Informer, ListedPage, MaxStaleness, ReadByIds
from poller.vendors.listing import Listing, sweep_pages
from poller.vendors.normalize import UnreadableTime, UnreadableValues, outcome_map, state_map
from schemas import CallOutcome, EntityKind, TaskState
from schemas.vendors.alibaba import (
    ListTaskDetailRequest,
    ListTaskDetailResponse,
    ListTaskRawResponse,
    ListTaskRequest,
    TaskDetailPage,
    TaskDetailRecord,
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
#: the statuses from which a task can still move on its own (the others change only when restarted)
LIVE_STATUSES = ("INIT", "RELEASE", "READY", "RUNNING", "STOP", "SYSTEM_STOP")
#: rounds of targeted reads in one cycle: the calls of the running tasks are read once per cycle,
#: so a cycle is one round and a call waits no longer than a status change
ROUNDS_PER_CYCLE = 1


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
    #: read only the tasks that can still change each cycle, plus a relist spread over ``max_staleness``;
    #: false: every cycle is one full listing
    targeted_reads: bool = True
    #: seconds within which every task, finished ones too (the vendor may restart them), is read
    #: again: the targeted reads spread a full relist over this
    max_staleness: MaxStaleness = 300.0

    def default_endpoint(self) -> str:
        return DEFAULT_ENDPOINT


_decode_raw_list = decoder(ListTaskRawResponse)
_decode_record = decoder(TaskRecord)
_decode_detail = decoder(ListTaskDetailResponse)


def vendor_time(text: str | None, tz: timezone) -> datetime | None:
    """``"YYYY-MM-DD HH:mm:ss"`` in ``tz``; None when the vendor gave none. Anything else raises
    :class:`UnreadableTime`, so it is reported instead of passing for an absent time."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
    except ValueError:
        raise UnreadableTime("not a wall-clock time") from None


def _event_time(text: str | None, tz: timezone, field: str, unreadable: UnreadableValues) -> str | None:
    try:
        moment = vendor_time(text, tz)
    except UnreadableTime:
        unreadable(field, text)
        return None
    return moment.isoformat() if moment is not None else None


def call_snapshot(
    record: TaskDetailRecord, task_id: str, tz: timezone, unreadable: UnreadableValues
) -> CallSnapshot:
    """One attempt of one callee: the detail id and the retry count name it, so a retried callee
    gives a new call and a re-read of the same attempt the same one. A time or a duration that
    cannot be read is published as null and told to ``unreadable``."""
    raw = record.StatusCode or record.Status
    outcome = OUTCOMES.normalize(raw) if record.StatusCode else CallOutcome.UNKNOWN
    attempt = record.RetryCurTimes or 0
    duration = record.Duration
    if duration is not None and duration < 0:
        unreadable("duration_seconds", duration)
        duration = None
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
        started_at=_event_time(record.StartTime, tz, "started_at", unreadable),
        ended_at=_event_time(record.EndTime, tz, "ended_at", unreadable),
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


def _build_task(raw: msgspec.Raw) -> EntitySnapshot:
    return task_entity(decode_record(raw))


def read_task_raw_page(resp: Response) -> TaskRawPage:
    """A classified 200 answer → its page of tasks, each left as raw JSON (decoded only when its bytes
    changed, see :class:`~poller.vendors.listing.SeenItems`), or a SourceError."""
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
        self._classify = classifier(LIST_API)
        self._classify_detail = classifier(DETAIL_API)
        self.tz = timezone(timedelta(minutes=config.utc_offset_minutes))
        #: attempts of the re-read margin already published, not handed out again
        self._emitted = EmittedCalls(CYCLE_CURSOR)
        self.informer = Informer(
            vendor=VENDOR,
            account=self.account,
            api=LIST_API,
            kind=EntityKind.TASK,
            live_statuses=LIVE_STATUSES,
            first_number=1,
            page_size=config.page_size,
            max_staleness=config.max_staleness,
            max_entities=config.max_entities,
            lists=self._limiter,
            by_id=self._limiter,  # ListTask by TaskId: one task per request, from the same budget
            by_id_batch=1,
            rounds=ROUNDS_PER_CYCLE,
            enabled=config.targeted_reads,
            report=self.report_reads,
        )

    @property
    def apis(self) -> tuple[str, ...]:
        return (LIST_API, DETAIL_API) if self.cfg.calls else (LIST_API,)

    async def _page(self, number: int, status: str | None = None, task_id: int | None = None) -> TaskRawPage:
        size = self.cfg.page_size if task_id is None else 1
        request = ListTaskRequest(PageNo=number, PageSize=size, Status=status, TaskId=task_id)
        classify = self._classify

        def parse(resp: Response) -> TaskRawPage:
            classify(resp)
            return read_task_raw_page(resp)

        return await call_rpc(self, self.signer, self._limiter, parse, LIST_API, request)

    async def _read(self, number: int, status: str | None) -> ListedPage:
        page = await self._page(number, status)
        return ListedPage(
            snapshots=self.informer.snapshots(page.Record, _build_task, status), total=page.Total
        )

    async def _read_ids(self, task_ids: list[str]) -> ReadByIds:
        found: list[EntitySnapshot] = []
        unaskable: list[str] = []
        for task_id in task_ids:
            if not (task_id.isascii() and task_id.isdigit()):
                unaskable.append(task_id)  # not an id ListTask can be asked for: the relist decides
                continue
            page = await self._page(1, task_id=int(task_id))
            found.extend(snap for snap in map(_build_task, page.Record) if snap.id == task_id)
        return ReadByIds(found=found, unaskable=unaskable)

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)
        await self.informer.read(committed, listing, self._read, self._read_ids)
        current = listing.snapshots()
        calls: list[CallSnapshot] = []
        cursors: dict[str, int] = {}
        if self.cfg.calls:
            try:
                calls, cursors = await self._calls(current, committed)
            except BaseException:
                self.informer.fail()
                raise
        # after the calls: a cycle that fails there leaves a finished relist pass to the next one
        entities, complete = self.informer.end(current)
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
        #: finished tasks followed for their margin only: their finish is committed (or is in this
        #: cycle's cursors), so one the vendor no longer knows is skipped, not a failed cycle
        margin: set[str] = set()
        for snap in entities:
            if snap.state in _CALLING:
                followed.append(snap.id)
                continue
            if not snap.state.terminal:
                continue  # not started: no call yet
            key = FINISHED_CURSOR.format(snap.id)
            old = committed.entities.get(snap.id)
            if old is not None and old.state != VANISHED and not TaskState(old.state).terminal:
                # it finished since the last cycle (a restarted task for the second time, too)
                finished = cursors[key] = now
            else:
                known = committed.cursors.get(key)
                if known is None:
                    # first seen finished (say, the first cycle): its calls are read this once
                    cursors[key] = now - settle - 1
                    followed.append(snap.id)
                    continue
                finished = known
            if now - finished <= settle:
                margin.add(snap.id)  # just finished: its last attempts may still be listed
        # a task that finished lately is followed through the margin even when this cycle did not
        # read it (targeted reads read only the tasks that can still change); one a complete listing
        # left out is gone
        if not self.informer.swept:
            read = {snap.id for snap in entities}
            finished_prefix = FINISHED_CURSOR.format("")
            for key, finished in committed.cursors.items():
                if key.startswith(finished_prefix) and now - finished <= settle:
                    task_id = key.removeprefix(finished_prefix)
                    old = committed.entities.get(task_id)
                    if task_id not in read and old is not None and old.state != VANISHED:
                        margin.add(task_id)
        followed.extend(sorted(margin))
        calls: list[CallSnapshot] = []

        prefix = ENDED_CURSOR.format("")
        published_until = {
            k.removeprefix(prefix): v for k, v in committed.cursors.items() if k.startswith(prefix)
        }
        emitted = self._emitted
        # an attempt ending at or before every followed task's cursor can no longer come back as new
        emitted.begin(committed.cursors, min((published_until.get(t, -1) for t in followed), default=now))

        async def follow(task_id: str) -> None:
            try:
                records, whole = await self._details(int(task_id))
            except Exception as exc:
                if task_id in margin and isinstance(as_source_error(exc), ClientError):
                    return  # deleted since it finished, as far as we can tell; the margin goes on
                raise
            until = published_until.get(task_id, -1)
            for record in records:
                if record.Status not in CALLED:
                    continue
                try:
                    ended = vendor_time(record.EndTime, self.tz)
                except UnreadableTime:
                    # its end is what places an attempt before or after the cursor: without one it
                    # would be new on every cycle, so it is left out (and counted) instead
                    self.unreadable("ended_at", record.EndTime)
                    continue
                if ended is None:
                    continue  # an attempt without its end is not finished yet as far as we can tell
                end = int(ended.timestamp())
                if end > now + _SKEW:
                    # "ending" in the future: it would be new on every cycle, so left out, counted
                    self.unreadable("ended_at", record.EndTime)
                    continue
                if end > until:
                    call = call_snapshot(record, task_id, self.tz, self.unreadable)
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
