"""Tencent Cloud CCC: ``DescribeAutoCalloutTasks`` per SdkAppId, TC3-HMAC-SHA256 signed, pages from 0.

Reads follow what can change (see :mod:`poller.vendors.informer`): the listing has no status filter,
but ``DescribeAutoCalloutTask`` reads one task on its own budget. Once an app's tasks are known and
a full listing takes more than a window's share, each cycle re-reads every live task by its id and
a slice of a relist spread over ``max_staleness``; with about as many live tasks as listing pages,
full listings stay cheaper. Only the relist's complete passes can vanish a task, and only a complete
listing (a sweep, or a pass that ends) lets the call-record cursor move.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import anyio
import msgspec
from yarl import URL

from poller.errors import (
    AuthFailed,
    BadResponse,
    ClientError,
    InternalError,
    ServerError,
    SourceError,
    Throttled,
    as_source_error,
)
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation, PageSink
from poller.pipeline.state import VANISHED, EntityState, SourceState
from poller.secrets import Secret
from poller.transport import Response
from poller.vendors.base import (
    AccountConfig,
    AdapterContext,
    Endpoint,
    NonEmpty,
    Source,
    Vendor,
    decode_or_bad,
    server_status,
)
from poller.vendors.emitted import EmittedCalls
from poller.vendors.informer import Informer, ListedPage, MaxStaleness, ReadByIds
from poller.vendors.listing import Listing, sweep_pages
from poller.vendors.normalize import UnreadableValues, outcome_map, state_map
from schemas import CallOutcome, EntityKind, TaskState
from schemas.events import CallLearnedBy
from schemas.vendors.tencent_ccc import (
    ApiError,
    AutoCalloutTaskInfo,
    DescribeAutoCalloutTaskRequest,
    DescribeAutoCalloutTaskResponse,
    DescribeAutoCalloutTaskResult,
    DescribeAutoCalloutTasksRawResponse,
    DescribeAutoCalloutTasksRequest,
    DescribeAutoCalloutTasksResponse,
    DescribeTelCdrRequest,
    DescribeTelCdrResponse,
    DescribeTelCdrResult,
    TelCdrInfo,
)

log = logging.getLogger("poller.vendors.tencent_ccc")
T = TypeVar("T")

VENDOR = "tencent-ccc"
SERVICE = "ccc"
VERSION = "2020-02-10"
LIST_API = "DescribeAutoCalloutTasks"
TASK_API = "DescribeAutoCalloutTask"
CDR_API = "DescribeTelCdr"
CONTENT_TYPE = "application/json"

STATES = state_map(
    VENDOR,
    {
        "0": TaskState.PENDING,  # 初始
        "1": TaskState.RUNNING,  # 运行中
        "2": TaskState.COMPLETED,  # 已完成
        "3": TaskState.STOPPING,  # 结束中: expired, some calls still open
        "4": TaskState.CANCELLED_BY_SYSTEM,  # 已结束/已终止 at expiry
        "5": TaskState.PAUSED,  # 已暂停 (newest doc)
    },
    field="State",
)
#: the states a task can still leave on its own (2 and 4 change only when the vendor restarts it)
LIVE_STATES = ("0", "1", "3", "5")
#: rounds of targeted reads in one cycle: the call records are read once per cycle, so a cycle is
#: one round and a call waits no longer than a state change
ROUNDS_PER_CYCLE = 1


#: DescribeTelCdr ``EndStatus`` (outbound and shared values; inbound-only ones fall to ``unknown``)
OUTCOMES = outcome_map(
    VENDOR,
    {
        "0": CallOutcome.FAILED,  # abnormal end
        "1": CallOutcome.ANSWERED,  # ok
        "100": CallOutcome.FAILED,  # blackList (system side)
        "108": CallOutcome.FAILED,  # restrictedCallee: risk-number interception
        "109": CallOutcome.FAILED,  # tooManyRequest: outbound frequency control
        "110": CallOutcome.FAILED,  # restrictedArea
        "111": CallOutcome.FAILED,  # restrictedTime
        "202": CallOutcome.NO_ANSWER,  # notAnswer
        "203": CallOutcome.REJECTED,  # userReject
        "204": CallOutcome.POWERED_OFF,  # powerOff
        "205": CallOutcome.INVALID_NUMBER,  # numberNotExist
        "206": CallOutcome.BUSY,  # busy
        "207": CallOutcome.SUSPENDED_LINE,  # outOfCredit: the callee's line is in arrears
        "208": CallOutcome.FAILED,  # operatorError
        "209": CallOutcome.MISSED,  # callerCancel
        "210": CallOutcome.POWERED_OFF,  # notInService: out of coverage
        "211": CallOutcome.FAILED,  # clientError
        "212": CallOutcome.FAILED,  # carrierBlocked
        "213": CallOutcome.POWERED_OFF,  # callReminder: the carrier's missed-call notice answered
        "215": CallOutcome.INVALID_NUMBER,  # numberInvalid
        "216": CallOutcome.SUSPENDED_LINE,  # callRestricted
        "217": CallOutcome.REJECTED,  # calleeRestricted: the callee blocks us
        "218": CallOutcome.FAILED,  # areaRestricted
        "219": CallOutcome.NO_ANSWER,  # promptCallForwarding
        "220": CallOutcome.MISSED,  # callerCancelWhileRing
        "221": CallOutcome.INVALID_NUMBER,  # callerCancelWithoutRing: callee number abnormal
        "222": CallOutcome.NO_ANSWER,  # voiceMailReached
    },
    field="EndStatus",
)


class TencentCccAccount(AccountConfig, frozen=True, kw_only=True):
    secret_id: NonEmpty
    secret_key: Secret
    sdk_app_ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(min_length=1)]
    endpoint: Endpoint = "https://ccc.tencentcloudapi.com"
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]+$")] | None = None
    #: DescribeAutoCalloutTasks does not publish its maximum; CCC's other listings cap PageSize at 100
    page_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    #: read every auto-callout call's record (DescribeAutoCalloutTask + DescribeTelCdr)
    calls: bool = True
    #: the sub-account the key belongs to: Tencent limits each API per sub-account and access
    #: region, so two keys of one sub-account share a budget (default: the key itself)
    rate_limit_identity: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    #: seconds: DescribeTelCdr selects by call start, so each window reaches this far before the
    #: committed cursor to find calls that started earlier and ended after it (the longest call)
    cdr_lookback: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 3600.0
    #: seconds: records ending this close to now may not be listed yet, so the cursor stays that far
    #: behind and they are read again (the same event id: JetStream drops the copy)
    cdr_settle: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0
    #: seconds before the cursor every cycle re-reads; the full ``cdr_lookback`` is read only every
    #: ``cdr_full_every`` seconds, so a call longer than this is published up to that much later and
    #: the cursor moves on full reads only (``cdr_recent >= cdr_lookback``: every read is full)
    cdr_recent: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 300.0
    cdr_full_every: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 60.0
    #: seconds: on the first cycle, calls that ended this far back are published
    cdr_backfill: Annotated[float, msgspec.Meta(ge=0, le=31 * 86400)] = 86400.0
    #: a DescribeTelCdr window claiming more records than this is a bad answer, not 1000s of pages
    max_cdr_records: Annotated[int, msgspec.Meta(ge=1)] = 100000
    #: re-read only the tasks that can still change each cycle (DescribeAutoCalloutTask, one task a
    #: request), plus a relist spread over ``max_staleness``; false: every cycle is one full listing
    targeted_reads: bool = True
    #: seconds within which every task, finished ones too (the vendor may restart them), is listed
    #: again: the targeted reads spread a full relist over this
    max_staleness: MaxStaleness = 300.0


# -- TC3-HMAC-SHA256 ---------------------------------------------------------------------------
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_string_to_sign(*, host: str, content_type: str, payload: bytes, timestamp: int, service: str) -> str:
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    return f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    k_date = _hmac(("TC3" + secret_key).encode(), date)
    k_signing = _hmac(_hmac(k_date, service), "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


def tc3_headers(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    action: str,
    payload: bytes,
    timestamp: int,
    region: str | None = None,
    service: str = SERVICE,
    version: str = VERSION,
    content_type: str = CONTENT_TYPE,
) -> dict[str, str]:
    """The headers of one signed API 3.0 POST request."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    to_sign = tc3_string_to_sign(
        host=host, content_type=content_type, payload=payload, timestamp=timestamp, service=service
    )
    signature = tc3_signature(secret_key, date, service, to_sign)
    headers = {
        "Authorization": (
            f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/{service}/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        ),
        "Content-Type": content_type,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Timestamp": str(timestamp),
    }
    if region:
        headers["X-TC-Region"] = region
    return headers


def host_of(endpoint: str) -> str:
    """The Host header (and signed host) for an endpoint: the port is included when not default."""
    url = URL(endpoint)
    return url.raw_authority


# -- error classification ------------------------------------------------------------------------
_decode_list = msgspec.json.Decoder(DescribeAutoCalloutTasksResponse)
_decode_task = msgspec.json.Decoder(DescribeAutoCalloutTaskResponse)
_decode_cdrs = msgspec.json.Decoder(DescribeTelCdrResponse)
_decode_raw_list = msgspec.json.Decoder(DescribeAutoCalloutTasksRawResponse)
_decode_task_info = msgspec.json.Decoder(AutoCalloutTaskInfo)


def raise_for(error: ApiError | None, api: str) -> None:
    """Raise the classified error of an API 3.0 ``Error`` (errors come with HTTP 200)."""
    if error is None:
        return
    code = error.Code
    detail = f"{code}: {error.Message}"
    if code.startswith("RequestLimitExceeded"):
        raise Throttled(detail, api=api)
    if code.startswith("AuthFailure") or code in ("UnauthorizedOperation",):
        raise AuthFailed(detail, api=api)
    if code.startswith(("InternalError", "ResourceUnavailable", "FailedOperation")):
        raise ServerError(detail, api=api)
    raise ClientError(detail, api=api)


def _body(resp: Response, api: str) -> bytes:
    server_status(resp, api)
    if resp.status != 200:
        raise BadResponse(f"HTTP {resp.status}", api=api)
    return resp.body


def classify(resp: Response) -> DescribeAutoCalloutTasksResponse:
    """Raise the classified error of an answer, or return it decoded."""
    envelope: DescribeAutoCalloutTasksResponse = decode_or_bad(_decode_list, _body(resp, LIST_API), LIST_API)
    raise_for(envelope.Response.Error, LIST_API)
    if envelope.Response.TotalCount is None or envelope.Response.Tasks is None:
        raise BadResponse("answer without TotalCount or Tasks", api=LIST_API)  # retried like garbage
    return envelope


def classify_raw(resp: Response) -> DescribeAutoCalloutTasksRawResponse:
    """``classify``, leaving each task as raw JSON (see :class:`~poller.vendors.listing.SeenItems`)."""
    envelope: DescribeAutoCalloutTasksRawResponse = decode_or_bad(
        _decode_raw_list, _body(resp, LIST_API), LIST_API
    )
    raise_for(envelope.Response.Error, LIST_API)
    if envelope.Response.TotalCount is None or envelope.Response.Tasks is None:
        raise BadResponse("answer without TotalCount or Tasks", api=LIST_API)  # retried like garbage
    return envelope


def decode_task(raw: msgspec.Raw) -> AutoCalloutTaskInfo:
    """One task of a raw listing, decoded when its bytes changed."""
    task: AutoCalloutTaskInfo = decode_or_bad(_decode_task_info, raw, LIST_API)
    return task


def classify_task(resp: Response) -> DescribeAutoCalloutTaskResult:
    envelope: DescribeAutoCalloutTaskResponse = decode_or_bad(_decode_task, _body(resp, TASK_API), TASK_API)
    raise_for(envelope.Response.Error, TASK_API)
    return envelope.Response


def classify_task_state(resp: Response) -> DescribeAutoCalloutTaskResult:
    """``classify_task`` for a read that follows the task: an answer without its state is retried."""
    result = classify_task(resp)
    if result.State is None:
        raise BadResponse("answer without State", api=TASK_API)
    return result


def classify_cdrs(resp: Response) -> DescribeTelCdrResult:
    envelope: DescribeTelCdrResponse = decode_or_bad(_decode_cdrs, _body(resp, CDR_API), CDR_API)
    raise_for(envelope.Response.Error, CDR_API)
    return envelope.Response


def normalize(task: AutoCalloutTaskInfo, sdk_app_id: int | str) -> EntitySnapshot:
    raw = str(task.State)
    return EntitySnapshot(
        kind=EntityKind.TASK,
        id=str(task.TaskId),
        parent_id=str(sdk_app_id),
        name=task.Name,
        state=STATES.normalize(raw),
        raw_state=raw,
        total=task.CalleeCount,
    )


def normalize_read(
    task: DescribeAutoCalloutTaskResult,
    task_id: str,
    sdk_app_id: int | str,
    *,
    listed_name: str | None,
    listed_total: int | None,
) -> EntitySnapshot:
    """The snapshot :func:`normalize` builds from the listing, from one task's own read.

    It must be that very snapshot, or the differ would see a change whenever the source alternates
    between the two reads. The answer has no ``TaskId`` (the one asked for is its id) and no
    ``CalleeCount``: ``Callees`` need not hold as many (the listing's count is the vendor's own), so
    ``total`` is the last listed count, and the name too when the answer has none.
    """
    assert task.State is not None  # checked by classify_task_state
    raw = str(task.State)
    return EntitySnapshot(
        kind=EntityKind.TASK,
        id=task_id,
        parent_id=str(sdk_app_id),
        name=task.Name if task.Name is not None else listed_name,
        state=STATES.normalize(raw),
        raw_state=raw,
        total=listed_total,
    )


#: Unix seconds a record's times must lie within (2001..2100): anything else is not a time
_PLAUSIBLE = range(1_000_000_000, 4_102_444_800)


def plausible_time(timestamp: int | None) -> int | None:
    return timestamp if timestamp is not None and timestamp in _PLAUSIBLE else None


def _time(timestamp: int | None, field: str, unreadable: UnreadableValues) -> int | None:
    """A record's time, or None: none given (absent or 0), or none it can be (told to ``unreadable``)."""
    if not timestamp:
        return None
    if timestamp not in _PLAUSIBLE:
        unreadable(field, timestamp)
        return None
    return timestamp


def _iso(timestamp: int | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp is not None else None


def call_snapshot(
    cdr: TelCdrInfo, task_id: str, unreadable: UnreadableValues, learned_by: CallLearnedBy = "poll"
) -> CallSnapshot:
    """A CDR as a call; the polled and the pushed record of one session give equal snapshots
    (up to ``task_id`` and ``learned_by``, which the event id does not hash).

    A time or duration it cannot be is null and told to ``unreadable`` under the field it would
    fill (the answer time under ``talk_seconds``): talk and ring time need the answer time, so an
    unreadable one leaves them null rather than 0 or the whole call."""
    raw = str(cdr.EndStatus)
    outcome = OUTCOMES.normalize(raw)
    ended = _time(cdr.EndedTimestamp, "ended_at", unreadable)
    accepted = _time(cdr.AcceptTimestamp, "talk_seconds", unreadable)
    ringing = _time(cdr.RingTimestamp, "ring_seconds", unreadable)
    # answered when the answer time is there, unknown when it is there but unreadable
    known = accepted is not None or not cdr.AcceptTimestamp
    talk = (max(0, ended - accepted) if accepted else 0) if ended and known else None
    answered_or_ended = accepted or ended
    ring = max(0, answered_or_ended - ringing) if ringing and answered_or_ended and known else None
    duration = cdr.Duration
    if duration is not None and duration < 0:
        unreadable("duration_seconds", duration)
        duration = None
    return CallSnapshot(
        call_id=cdr.SessionId,
        task_id=task_id,
        outcome=outcome,
        raw_outcome=raw,
        failure_reason=None if outcome is CallOutcome.ANSWERED else (cdr.EndStatusString or None),
        callee_number=cdr.Callee or cdr.ProtectedCallee or None,
        caller_number=cdr.Caller or cdr.ProtectedCaller or None,
        duration_seconds=duration,
        started_at=_iso(_time(cdr.StartTimestamp or cdr.Time, "started_at", unreadable)),
        ended_at=_iso(ended),
        vendor_call_id=cdr.SessionId,
        talk_seconds=talk,
        ring_seconds=ring,
        learned_by=learned_by,
    )


#: committed cursors: every auto-callout call that ended at or before this Unix second is published
CDR_CURSOR = "cdr.until"
#: the mark of the last cycle's observation (see :class:`poller.vendors.emitted.EmittedCalls`)
CYCLE_CURSOR = "cdr.cycle"
#: per task: the Unix second it was first seen terminal; its sessions are read until the cursor passes it
ENDED_CURSOR = "task_ended.{}"
#: DescribeTelCdr accepts windows shorter than 90 days reaching at most 180 days back
_MAX_RANGE = 89 * 86400
_MAX_BACK = 179 * 86400
#: seconds a record's end may lie ahead of our clock
_SKEW = 300
#: seconds the vendor's clock may lag ours when a record's end is set against when a task was read
_READ_SKEW = 5


class _Asked:
    """One push waiting to learn which task placed its call."""

    __slots__ = ("done", "error", "task")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.task: str | None = None
        self.error: SourceError | None = None

    def answer(self, task: str | None, error: SourceError | None = None) -> None:
        self.task, self.error = task, error
        self.done.set()


class TencentCccSource(Source):
    """One SdkAppId of one Tencent Cloud account: its auto-callout tasks and their calls.

    Calls cost two reads, chosen for what each is cheap at within the per-API budget:

    * ``DescribeTelCdr`` by time window, for the whole app: ceil(records in the window / 100)
      requests a cycle however many tasks run. Reading by session id would cost a request per
      batch of sessions of every running task every cycle, and a callee's next session is only
      known after reading its task anyway. The window starts ``cdr_lookback`` before the committed
      cursor (it selects by call start, and a call ends after it starts) and ends now; only records
      that ended after the cursor become events. The cursor stays ``cdr_settle`` behind now, so a
      record listed late is still found; records re-read in that margin are not handed out again.
      Only every ``cdr_full_every`` seconds does the window reach back the whole ``cdr_lookback``;
      in between it reaches ``cdr_recent`` back, which holds all but the longest calls: the pages
      per cycle follow the calls of the last minutes, not of the last hour.
    * ``DescribeAutoCalloutTask`` per task, only to learn which sessions are auto-callout calls and
      of which task: only when the window holds a session not yet known, and only for the tasks that
      can still place calls (not terminal, or terminal until the cursor passes their end), and of
      those only the ones no read since the session ended has told about. A task this cycle's
      targeted reads already read is not read again: that read told its sessions too. A session
      such a read came too early for (it ended after it) is neither taken for a seat's own call nor
      passed by the cursor; the next cycle's read tells.

    A pushed record names no task, so the push receiver asks :meth:`task_of` and the same session map
    answers: a pushed call is published exactly when polling would publish it, with its task.

    Tencent limits each API per sub-account and access region (not per SdkAppId), so the limiters
    are keyed by ``rate_limit_identity`` and the endpoint's host, and every app of the account
    shares them.
    """

    vendor = VENDOR
    reuses_snapshots = True

    def __init__(self, config: TencentCccAccount, ctx: AdapterContext, sdk_app_id: int) -> None:
        super().__init__(config, ctx, scope=str(sdk_app_id))
        self.cfg = config
        self.sdk_app_id = sdk_app_id
        self.url = config.endpoint.rstrip("/") + "/"
        self.host = host_of(config.endpoint)
        identity = f"{config.rate_limit_identity or config.secret_id}@{self.host}"
        self._limiters = {api: self.limiter(api, identity, limit) for api, limit in APIS.items()}
        self._limiter = self._limiters[LIST_API]
        self.informer = Informer(
            vendor=VENDOR,
            account=self.account,
            api=LIST_API,
            kind=EntityKind.TASK,
            live_statuses=LIVE_STATES,
            status_filter=False,  # DescribeAutoCalloutTasks has none: live tasks are read by id
            first_number=0,
            page_size=config.page_size,
            max_staleness=config.max_staleness,
            max_entities=config.max_entities,
            lists=self._limiter,
            by_id=self._limiters[TASK_API],  # one task a request, on that API's own budget
            by_id_batch=1,
            rounds=ROUNDS_PER_CYCLE,
            enabled=config.targeted_reads,
            report=self.report_reads,
        )
        #: this cycle's committed state (what a task's own read takes its listed fields from), the
        #: tasks read by id (with their sessions), and those the vendor said it does not know
        self._committed = SourceState()
        self._cycle_read: set[int] = set()
        self._cycle_gone: set[str] = set()
        #: task id → when its last read began (Unix seconds, our clock), of the followed tasks
        self._read_at: dict[int, float] = {}
        #: unknown session → when the first call-record read that listed it began (our clock)
        self._listed_at: dict[str, float] = {}
        #: when the cursor last moved (monotonic; None: not yet here)
        self._last_moved: float | None = None
        #: session id → task id, learned from task details (rebuilt after a restart)
        self._session_task: dict[str, str] = {}
        #: sessions in the window that no followed task owns → their end, kept while re-read
        self._foreign: dict[str, int] = {}
        #: calls of the re-read margin already published, not handed out again
        self._emitted = EmittedCalls(CYCLE_CURSOR)
        #: when the last whole full look-back read was (monotonic); None: the next read is full
        self._last_full: float | None = None
        #: what pushes are answered from: the last cycle's followed tasks and committed cursor
        self._push_followed: list[int] | None = None
        self._push_until: int | None = None
        #: pushes waiting for the next learn round, by session; woken by ``_push_wake``
        self._asked: dict[str, list[_Asked]] = {}
        self._push_wake: anyio.Event | None = None

    @property
    def apis(self) -> tuple[str, ...]:
        if self.cfg.calls:
            return tuple(APIS)
        return (LIST_API, TASK_API) if self.cfg.targeted_reads else (LIST_API,)

    async def _post(self, api: str, body: msgspec.Struct, parse: Callable[[Response], T]) -> T:
        payload = msgspec.json.encode(body)

        async def prepare() -> tuple[Mapping[str, str], bytes]:
            headers = tc3_headers(
                secret_id=self.cfg.secret_id,
                secret_key=self.cfg.secret_key.reveal(),
                host=self.host,
                action=api,
                payload=payload,
                timestamp=int(time.time()),
                region=self.cfg.region,
            )
            return headers, payload

        return await self.send(api, self._limiters[api], "POST", self.url, parse=parse, prepare=prepare)

    async def _page(self, number: int) -> tuple[int, list[msgspec.Raw]]:
        request = DescribeAutoCalloutTasksRequest(
            SdkAppId=self.sdk_app_id, PageSize=self.cfg.page_size, PageNumber=number
        )
        answer = await self._post(LIST_API, request, classify_raw)
        result = answer.Response
        assert result.TotalCount is not None and result.Tasks is not None  # checked by classify
        return result.TotalCount, result.Tasks

    def _build(self, raw: msgspec.Raw) -> EntitySnapshot:
        return normalize(decode_task(raw), self.sdk_app_id)

    async def _read(self, number: int, status: str | None) -> ListedPage:
        """One page of the listing (``status`` is always None: it has no status filter)."""
        total, tasks = await self._page(number)
        return ListedPage(snapshots=self.informer.snapshots(tasks, self._build, None), total=total)

    def _listed(self, task_id: str) -> EntitySnapshot | EntityState | None:
        """The task as last listed or published: what its own read cannot tell is taken from it."""
        listed = self.informer.relist.by_id.get(task_id)
        return listed if listed is not None else self._committed.entities.get(task_id)

    async def _read_ids(self, task_ids: list[str]) -> ReadByIds:
        """Each task's own read; one the vendor does not know is left to the relist, one that fails
        otherwise stays followed (rejected credentials fail the cycle)."""
        found: list[EntitySnapshot] = []
        unread: list[str] = []
        unaskable: list[str] = []
        for task_id in task_ids:
            listed = self._listed(task_id)
            if not (task_id.isascii() and task_id.isdigit()) or listed is None:
                unaskable.append(task_id)  # never listed here: not a task to follow by id, the relist decides
                continue
            request = DescribeAutoCalloutTaskRequest(SdkAppId=self.sdk_app_id, TaskId=int(task_id))
            began = time.time()
            try:
                detail = await self._post(TASK_API, request, classify_task_state)
            except SourceError as error:
                if isinstance(error, AuthFailed | InternalError):
                    raise
                if isinstance(error, ClientError):
                    self._cycle_gone.add(task_id)
                else:
                    unread.append(task_id)
                continue
            self._cycle_read.add(int(task_id))
            self._learned(int(task_id), detail, began)
            total = listed.total
            name = listed.name
            found.append(
                normalize_read(detail, task_id, self.sdk_app_id, listed_name=name, listed_total=total)
            )
        return ReadByIds(found=found, unread=unread, unaskable=unaskable)

    def _learned(self, task_id: int, detail: DescribeAutoCalloutTaskResult | None, began: float) -> None:
        """A task read (``detail`` None: the vendor does not know it) that began at ``began`` (Unix
        seconds): which sessions are its calls. A session that ended before that and is not among
        them is not its call."""
        if not self.cfg.calls:
            return
        self._read_at[task_id] = began
        owner = str(task_id)
        for callee in detail.Callees or [] if detail is not None else []:
            for session in callee.Sessions or []:
                self._session_task[session] = owner

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        listing = Listing(early)
        self._committed = committed
        self._cycle_read, self._cycle_gone = set(), set()
        try:
            await self.informer.read(committed, listing, self._read, self._read_ids)
        finally:
            self._committed = SourceState()
        current = listing.snapshots()
        calls: list[CallSnapshot] = []
        cursors: dict[str, int] = {}
        if self.cfg.calls:
            # the cursor moves only after a complete listing: a sweep, or a relist pass this cycle ends
            complete = self.informer.complete
            if self.informer.following:
                known = self._known(current, committed)
            else:
                known = {snap.id: snap.state for snap in current}
            try:
                calls, cursors = await self._calls(known, committed, complete)
            except BaseException:
                self.informer.fail()
                raise
        # after the calls: a cycle that fails there leaves a finished relist pass to the next one
        entities, complete = self.informer.end(current)
        return Observation(entities=entities, complete=complete, calls=calls, cursors=cursors)

    def _known(self, current: list[EntitySnapshot], committed: SourceState) -> dict[str, TaskState]:
        """Every task's state as far as this cycle knows: targeted reads read a few, the rest is as
        committed (less those a read by id found gone)."""
        kind, gone = EntityKind.TASK.value, self._cycle_gone
        states = {
            task_id: TaskState(entity.state)
            for task_id, entity in committed.entities.items()
            if entity.kind == kind and entity.state != VANISHED and task_id not in gone
        }
        states.update((snap.id, snap.state) for snap in current)
        return states

    # -- calls --------------------------------------------------------------------------------------
    def _followed(
        self, states: Mapping[str, TaskState], committed: SourceState, until: int, now: int
    ) -> tuple[list[int], dict[str, int]]:
        """The tasks that can still place calls, and the end marks of tasks newly seen terminal."""
        followed: list[int] = []
        ended: dict[str, int] = {}
        for task_id, state in states.items():
            if not state.terminal:
                followed.append(int(task_id))
                continue
            key = ENDED_CURSOR.format(task_id)
            mark = committed.cursors.get(key)
            if mark is None:
                mark = ended[key] = now
            if mark > until:
                followed.append(int(task_id))
        return followed, ended

    async def _learn_sessions(self, task_ids: list[int], *, skip_unknown: bool = False) -> None:
        """Read these tasks' sessions; ``skip_unknown``: a task the vendor does not know (deleted
        since it was listed) owns none we can learn, and the relist decides about it."""

        async def one(task_id: int) -> None:
            request = DescribeAutoCalloutTaskRequest(SdkAppId=self.sdk_app_id, TaskId=task_id)
            began = time.time()
            try:
                detail: DescribeAutoCalloutTaskResult | None = await self._post(
                    TASK_API, request, classify_task
                )
            except ClientError:
                if not skip_unknown:
                    raise
                detail = None
            self._learned(task_id, detail, began)

        slots = anyio.CapacityLimiter(self._limiters[TASK_API].limit)

        async def bounded(task_id: int) -> None:
            async with slots:
                await one(task_id)

        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                tg.start_soon(bounded, task_id)

    # -- pushed calls -------------------------------------------------------------------------------
    @property
    def polled_until(self) -> int | None:
        """Polling has published every auto-callout call that ended at or before this Unix second;
        None while this source cannot answer pushes (not polled here yet, or not any more)."""
        return self._push_until if self._push_wake is not None else None

    async def task_of(self, session_id: str) -> str | None:
        """The task that placed this call, or None when no followed task did (a seat's own call).

        An unknown session waits for one learn round of the followed tasks, shared by every push
        waiting when it starts. Raises :class:`SourceError` when it cannot tell now.
        """
        task = self._session_task.get(session_id)
        if task is not None or session_id in self._foreign:
            return task  # polling's own verdict
        wake, followed = self._push_wake, self._push_followed
        if wake is None or followed is None:
            raise SourceError("this app is not polled here now", api=TASK_API)
        if not followed:
            return None  # no task can place calls: polling publishes none either
        asked = _Asked()
        self._asked.setdefault(session_id, []).append(asked)
        wake.set()
        await asked.done.wait()
        if asked.error is not None:
            raise asked.error
        return asked.task

    async def answer_pushes(self) -> None:
        """Run the learn rounds :meth:`task_of` waits for, one at a time, while this source is polled
        here (the runtime runs it beside the source's loop)."""
        try:
            while True:
                wake = self._push_wake = anyio.Event()
                if not self._asked:
                    await wake.wait()
                await self._learn_for_pushes()
        finally:
            self._push_wake = None
            stopped = SourceError("stopped polling this app here", api=TASK_API)
            waiting, self._asked = self._asked, {}
            for askers in waiting.values():
                for asked in askers:
                    asked.answer(None, stopped)

    async def _learn_for_pushes(self) -> None:
        """One learn round for the pushes waiting now; those that arrive meanwhile are answered by it
        when it found their session, else they wait for the next round (it may have read a task's
        sessions before their call was placed)."""
        batch, self._asked = self._asked, {}
        known = self._session_task
        error: SourceError | None = SourceError("stopped polling this app here", api=TASK_API)
        try:
            if any(session not in known for session in batch):  # polling may have learned them
                await self._learn_sessions(list(self._push_followed or []))
            error = None
        except Exception as exc:
            error = as_source_error(exc) or SourceError(type(exc).__name__, api=TASK_API)
            log.warning(
                "cannot learn the tasks of pushed calls now; those pushes are refused for a re-push",
                extra={
                    "vendor": VENDOR,
                    "account": self.account,
                    "scope": self.scope,
                    "api": error.api or TASK_API,
                    "reason": error.reason.value,
                },
            )
        finally:
            for session, askers in batch.items():
                task = known.get(session)
                for asked in askers:
                    asked.answer(task, error if task is None else None)
        for session in [s for s in self._asked if s in known]:
            for asked in self._asked.pop(session):
                asked.answer(known[session])

    async def _cdrs(self, start: int, end: int) -> tuple[list[TelCdrInfo], bool]:
        """Every record of the window, and whether the pages agreed on the total and held it all."""
        size = min(self.cfg.page_size, 100)

        async def fetch(number: int) -> DescribeTelCdrResult:
            request = DescribeTelCdrRequest(
                SdkAppId=self.sdk_app_id,
                StartTimeStamp=start,
                EndTimeStamp=end,
                PageSize=size,
                PageNumber=number,
            )
            result = await self._post(CDR_API, request, classify_cdrs)
            if result.TotalCount is None:
                raise BadResponse("answer without TotalCount", api=CDR_API)
            return result

        def total_of(result: DescribeTelCdrResult) -> int:
            total = result.TotalCount or 0
            if not 0 <= total <= self.cfg.max_cdr_records:
                raise BadResponse(
                    f"TotalCount {total} outside 0..{self.cfg.max_cdr_records} (max_cdr_records)", api=CDR_API
                )
            return total

        sweep = await sweep_pages(
            0,
            size,
            fetch,
            total_of,
            self._limiters[CDR_API].limit,
            max_total=self.cfg.max_cdr_records,
            api=CDR_API,
        )
        records: dict[str, TelCdrInfo] = {}
        for result in sweep.pages:
            for cdr in result.TelCdrList if result.TelCdrList is not None else result.TelCdrs or []:
                records[cdr.SessionId] = cdr
        return list(records.values()), sweep.totals_agree and len(records) == sweep.total

    async def _calls(
        self, states: Mapping[str, TaskState], committed: SourceState, complete: bool
    ) -> tuple[list[CallSnapshot], dict[str, int]]:
        now = int(time.time())
        until = committed.cursors.get(CDR_CURSOR, now - int(self.cfg.cdr_backfill))
        until = max(until, now - _MAX_BACK)
        followed, cursors = self._followed(states, committed, until, now)
        self._push_followed, self._push_until = followed, until
        cfg, clock = self.cfg, time.monotonic()
        # a complete listing reads the full look-back when the cursor last moved that long ago, even
        # if a full read came since (it could not move the cursor: targeted cycles end a pass only
        # now and then)
        full = (
            self._last_full is None
            or clock - self._last_full >= cfg.cdr_full_every
            or cfg.cdr_recent >= cfg.cdr_lookback
            or (complete and (self._last_moved is None or clock - self._last_moved >= cfg.cdr_full_every))
        )
        depth = cfg.cdr_lookback if full else cfg.cdr_recent
        start = max(until - int(depth), now - _MAX_BACK, now - _MAX_RANGE)
        records_read = time.time()
        records, whole = await self._cdrs(start, now)
        emitted = self._emitted
        emitted.begin(committed.cursors, until)
        # a record whose end is no time, or lies in the future, is left out (one "ending" ahead would
        # be new on every cycle) and counted each time it is read
        ends: set[str] = set()
        for r in records:
            if r.EndedTimestamp and (plausible_time(r.EndedTimestamp) or _PLAUSIBLE.stop) > now + _SKEW:
                self.unreadable("ended_at", r.EndedTimestamp)
            else:
                ends.add(r.SessionId)
        fresh = [
            r
            for r in records
            if r.SessionId in ends
            and r.EndedTimestamp
            and until < r.EndedTimestamp
            and not emitted.published(r.SessionId)
        ]
        foreign = self._foreign
        for session in [s for s, ended in foreign.items() if ended <= until]:
            del foreign[session]
        unknown = [r for r in fresh if r.SessionId not in self._session_task and r.SessionId not in foreign]
        read_at, following = self._read_at, set(followed)
        for task in [t for t in read_at if t not in following]:
            del read_at[task]
        # a task read that began after a session ended (by its record), or after a call-record read
        # that listed it (our own clock), lists it if it is the task's: one that does not list it
        # does not own it. A read from before is no proof: the session may be younger than it
        listed_at = {r.SessionId: self._listed_at.get(r.SessionId, records_read) for r in unknown}
        self._listed_at = listed_at
        proof_from = {
            r.SessionId: min(listed_at[r.SessionId], (r.EndedTimestamp or 0) + _READ_SKEW) for r in unknown
        }
        if unknown:
            # tasks read by id this cycle are not read again: the next cycle's read tells
            latest = max(proof_from.values())
            stale = [t for t in followed if t not in self._cycle_read and read_at.get(t, 0.0) < latest]
            if stale:
                await self._learn_sessions(stale, skip_unknown=True)
        oldest = min((read_at.get(t, 0.0) for t in followed), default=None)
        undecided_from: int | None = None
        for r in unknown:
            if r.SessionId in self._session_task:
                continue
            ended = r.EndedTimestamp or 0
            if oldest is not None and oldest < proof_from[r.SessionId]:
                # neither a seat's own call nor passed by the cursor until a read proves it
                undecided_from = ended if undecided_from is None else min(undecided_from, ended)
            elif complete:
                # not a call of any task that can still place calls (a manual call, say): not looked
                # up again while it stays in the re-read margin; a listing that missed tasks cannot
                # tell, so the next cycle looks again
                foreign[r.SessionId] = ended
        calls = [
            call_snapshot(r, self._session_task[r.SessionId], self.unreadable)
            for r in fresh
            if r.SessionId in self._session_task
        ]
        for call in calls:
            emitted.handed_out(call.call_id, now)
        cursors.update(emitted.mark())
        for r in records:
            if r.EndedTimestamp and r.EndedTimestamp <= until:
                self._session_task.pop(r.SessionId, None)  # published before: never needed again
        if whole and full:
            self._last_full = clock
        if whole and full and complete:
            # a window that did not page consistently is read again from the same cursor next cycle
            # (never the current second: a record ending in it may still be listed after this read);
            # a shorter read may have missed a long call ending after the cursor, so it keeps it; and
            # a listing that missed tasks may have left their calls unclaimed, so it keeps it too
            moved = now - max(1, int(self.cfg.cdr_settle))
            if undecided_from is not None:
                moved = min(moved, undecided_from - 1)
            cursors[CDR_CURSOR] = max(until, moved)
            self._last_moved = clock
        return calls, cursors


def build_sources(config: TencentCccAccount, ctx: AdapterContext) -> list[Source]:
    return [TencentCccSource(config, ctx, app) for app in config.sdk_app_ids]


#: each API's documented default: 20 requests a second per sub-account and access region
APIS: Mapping[str, int] = {LIST_API: 20, TASK_API: 20, CDR_API: 20}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=TencentCccAccount,
    sources=build_sources,
    apis=APIS,
    doc="Tencent Cloud CCC DescribeAutoCalloutTasks, DescribeAutoCalloutTask and DescribeTelCdr "
    "(TC3-HMAC-SHA256, 20 req/s each, pages from 0)",
)
