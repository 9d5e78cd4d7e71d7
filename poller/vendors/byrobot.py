"""BYRobot (百应) OpenAPI v1: tasks of one company, their finished calls through the ``index`` cursor.

One source per company. Each cycle:

1. ``getTasks``: every page (from 1), the task listing, complete only if the pages agree; or, once
   the tasks are known and a full listing takes more than a window's share, reads that follow what
   can change (see :mod:`poller.vendors.informer`): ``getTasks`` with ``status`` for each live status
   (not started, running, paused by the user or by the system), ``getTaskDetail`` for the live
   tasks those lists did not return and for the tasks whose calls are behind, and a slice of a full
   relist spread over ``max_staleness``. Only a complete listing (or relist pass) vanishes a task.
2. ``getTaskDetail`` for each task read this cycle that is active (running or paused) now or in the
   committed state, new to us, or due again: idle tasks (pending, finished) are re-read every
   ``detail_interval`` seconds (with targeted reads: when the relist reads them, at most that
   often) because vendors restart tasks and the listing may carry ``null`` counts (the doc's own
   example does). A task read by id in step 1 is not asked for its detail twice.
3. ``queryDoneTaskPhones`` for the same active tasks, from the committed ``index`` cursor
   (``Observation.cursors``), so the cursor only moves once the calls' events are acked. The cursor
   trusts ``callIndex`` only while it numbers the task's calls 0, 1, 2, … as they end (see
   :meth:`ByRobotSource._calls_by_index`): a value that cannot be such a number never moves it.
4. Optionally ``phoneLogInfo`` per new call (``enrich_calls``) → :class:`CallDetail`.

A task whose detail or calls fail this cycle keeps its committed counts and cursor and is retried
next cycle (logged when it starts failing); the cycle only fails as a whole when the listing fails,
credentials are rejected, or every followed task failed (other than with a "no such task"-like
client error), so an API that is down shows as a degraded source.

A task seen for the first time has all its finished calls published (from cursor -1), also when
it finished long ago: nothing is lost, and the cursor makes it a one-time backfill.

Auth is three headers: ``appkey``, ``datetime`` (RFC 1123 GMT) and ``sign`` =
Base64(HMAC-SHA1(appSecret, appKey + "\\n" + datetime)). Error codes for auth (401/403) and
throttling (429) are not documented by the vendor: they are our reading, which the simulator
answers; HTTP status codes say the same where a server uses them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Annotated, Any, TypeVar

import anyio
import msgspec

from poller.errors import AuthFailed, BadResponse, ClientError, ServerError, SourceError, Throttled
from poller.pipeline.snapshot import CallSnapshot, EntitySnapshot, Observation, PageSink
from poller.pipeline.state import EntityState, SourceState
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
from poller.vendors.informer import Informer, ListedPage, MaxStaleness, ReadByIds
from poller.vendors.listing import Listing, sweep_pages
from poller.vendors.normalize import UnreadableTime, UnreadableValues, outcome_map, state_map
from schemas import CallDetail, CallOutcome, EntityKind, TaskState
from schemas.vendors.byrobot import (
    DoneCall,
    DoneCallsQuery,
    Page,
    PhoneLogInfo,
    RawEnvelope,
    TaskDetail,
    TaskInfo,
)

log = logging.getLogger("poller.vendors.byrobot")

T = TypeVar("T")

VENDOR = "byrobot"
TASKS_API = "getTasks"
DETAIL_API = "getTaskDetail"
CALLS_API = "queryDoneTaskPhones"
PHONE_LOG_API = "phoneLogInfo"
PATH_PREFIX = "/openapi/v1/task/"
SUCCESS_CODE = 200
#: envelope (or HTTP) codes we read as "credentials rejected" and "slow down" (undocumented)
AUTH_CODES = frozenset({401, 403})
THROTTLE_CODES = frozenset({429})
#: committed cursor keys: the highest ``callIndex`` published, and (servers without ``callIndex``)
#: how many of the task's finished calls were published
INDEX_CURSOR = "calls.{}"
COUNT_CURSOR = "calls_seen.{}"
#: no task numbers more calls than this: the calls a JSON number holds exactly in every reader
MAX_CALL_INDEX = 2**53

STATES = state_map(
    VENDOR,
    {
        "0": TaskState.PENDING,  # 未开始
        "1": TaskState.RUNNING,  # 进行中
        "2": TaskState.COMPLETED,  # 已完成
        "4": TaskState.PAUSED,  # 用户暂停
        "5": TaskState.PAUSED_BY_SYSTEM,  # 系统暂停 (arrears, line trouble, outside working hours)
        # 已终止: the console's "终止任务" button, a user action. When BYRobot's system stops a task it
        # pauses it (5 系统暂停) rather than terminating it, so 6 reads as cancelled by the user.
        "6": TaskState.CANCELLED,
    },
    field="status",
)

OUTCOMES = outcome_map(
    VENDOR,
    {
        "0": CallOutcome.ANSWERED,  # 已接听
        "1": CallOutcome.REJECTED,  # 拒接
        "2": CallOutcome.NO_ANSWER,  # 无应答 (UI: 无法接通)
        "3": CallOutcome.CALLER_NUMBER_UNAVAILABLE,  # 主叫号码不可用 (createTask: 外呼失败)
        "4": CallOutcome.INVALID_NUMBER,  # 空号
        "5": CallOutcome.POWERED_OFF,  # 关机
        "6": CallOutcome.BUSY,  # 占线
        "7": CallOutcome.SUSPENDED_LINE,  # 停机
        "8": CallOutcome.MISSED,  # 未接
        "9": CallOutcome.CALLER_IN_ARREARS,  # 主叫欠费
        "10": CallOutcome.CALL_LOSS,  # 呼损 (createTask's redial enum)
    },
    field="finishStatus",
)

#: the vendor's own words for a call that was not answered, published as ``failure_reason``
FINISH_LABELS = {
    "1": "拒接",
    "2": "无应答",
    "3": "主叫号码不可用",
    "4": "空号",
    "5": "关机",
    "6": "占线",
    "7": "停机",
    "8": "未接",
    "9": "主叫欠费",
    "10": "呼损",
}

HUNG_UP_BY = {"0": "ai", "1": "callee"}

#: the statuses from which a task can still move on its own: 0 未开始, 1 进行中, 4 用户暂停, 5 系统暂停
#: (2 已完成 and 6 已终止 change only when the vendor restarts a task)
LIVE_STATUSES = ("0", "1", "4", "5")
#: rounds of targeted reads in one cycle: the active tasks' details and calls are read once per
#: cycle, so a cycle is one round and a call waits no longer than a status change
ROUNDS_PER_CYCLE = 1

#: states in which a task's calls and counts move: followed every cycle
_ACTIVE = frozenset(
    {
        TaskState.RUNNING.value,
        TaskState.STOPPING.value,
        TaskState.PAUSED.value,
        TaskState.PAUSED_BY_SYSTEM.value,
        TaskState.UNKNOWN.value,
    }
)


class ByRobotAccount(AccountConfig, frozen=True, kw_only=True):
    """One BYRobot company and the app credentials that may read it."""

    company_id: Annotated[int, msgspec.Meta(ge=1)]
    app_key: NonEmpty
    app_secret: Secret
    endpoint: Endpoint = "http://api.byrobot.cn"
    #: getTasks pageSize (the vendor's max is 100)
    page_size: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100
    #: queryDoneTaskPhones pageSize (1–50)
    call_page_size: Annotated[int, msgspec.Meta(ge=1, le=50)] = 50
    #: cursor pages of finished calls read per task per cycle; the rest follow next cycle
    max_call_pages: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    #: fetch phoneLogInfo for every finished call (one more request per call)
    enrich_calls: bool = False
    #: pending and finished tasks are re-read (detail, and calls if the counts moved) this often
    detail_interval: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    #: tasks followed at once (the rate limits still apply on top)
    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    #: the vendor's times are local wall-clock strings; China Standard Time unless told otherwise
    utc_offset_minutes: Annotated[int, msgspec.Meta(ge=-720, le=840)] = 480
    #: read only the tasks that can still change each cycle, plus a relist spread over ``max_staleness``;
    #: false: every cycle is one full listing
    targeted_reads: bool = True
    #: seconds within which every task, finished ones too (the vendor may restart them), is read
    #: again: the targeted reads spread a full relist over this
    max_staleness: MaxStaleness = 300.0


# -- auth -------------------------------------------------------------------------------------------
def rfc1123(moment: datetime) -> str:
    """``EEE, dd MMM yyyy HH:mm:ss GMT`` in English whatever the locale, from real UTC."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def sign(app_key: str, app_secret: str, date: str) -> str:
    digest = hmac.new(app_secret.encode(), f"{app_key}\n{date}".encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def auth_headers(app_key: str, app_secret: str, now: datetime | None = None) -> dict[str, str]:
    date = rfc1123(now or datetime.now(UTC))
    return {
        "appkey": app_key,
        "datetime": date,
        "sign": sign(app_key, app_secret, date),
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Charset": "utf-8",
    }


# -- answers and errors -----------------------------------------------------------------------------
_decode_envelope = msgspec.json.Decoder(RawEnvelope)
_decode_tasks = msgspec.json.Decoder(Page[TaskInfo])
_decode_detail = msgspec.json.Decoder(TaskDetail)
_decode_calls = msgspec.json.Decoder(Page[DoneCall])
_decode_phone_log = msgspec.json.Decoder(PhoneLogInfo)

_LONG_DIGITS = re.compile(r"\d{7,}")


def _scrub(message: str | None) -> str:
    """A vendor message fit for logs: it may quote a phone number, so long digit runs go."""
    return _LONG_DIGITS.sub("***", (message or "")[:200])


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts ``"¹"`` or ``"٣"``, which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def code_value(code: int | str | None) -> int | None:
    if isinstance(code, int):
        return code
    if isinstance(code, str) and _digits(code.strip().lstrip("-")):
        return int(code.strip())
    return None


def raw_code(value: int | str | None) -> str:
    """An enum code as the raw string kept beside the normalized value (``2`` and ``"2"`` alike)."""
    if value is None:
        return ""
    return str(value).strip()


def error_for(code: int | None, message: str, http_status: int, api: str) -> SourceError:
    """The classified error of a non-success answer: envelope code first, HTTP status second."""
    detail = _scrub(f"HTTP {http_status}, code {code}: {message}")  # a hostile code can look like a number
    if code in AUTH_CODES or http_status in AUTH_CODES:
        return AuthFailed(detail, api=api)
    if code in THROTTLE_CODES:  # HTTP 429 is read by the transport, for every vendor
        return Throttled(detail, api=api)
    if (code is not None and code >= 500) or http_status >= 500:
        return ServerError(detail, api=api)
    return ClientError(detail, api=api)


def read_answer(resp: Response, api: str, decoder: msgspec.json.Decoder[T]) -> T:
    """The ``data`` of a success answer, or the classified error. Nothing of a bad answer is used."""
    server_status(resp, api)
    try:
        envelope = _decode_envelope.decode(resp.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if resp.status != 200:
            raise error_for(None, "no vendor envelope", resp.status, api) from exc
        raise BadResponse(f"undecodable answer: {exc}", api=api) from exc
    code = code_value(envelope.code)
    if code != SUCCESS_CODE:
        raise error_for(code, _scrub(envelope.resultMsg), resp.status, api)
    if resp.status != 200:
        raise BadResponse(f"HTTP {resp.status} with a success envelope", api=api)
    if bytes(envelope.data) == b"null":
        raise BadResponse("success answer without data", api=api)
    data: T = decode_or_bad(decoder, envelope.data, api)
    return data


# -- values -----------------------------------------------------------------------------------------
_DURATION = re.compile(
    r"^(?:(?P<h>\d+)\s*(?:小时|时|h))?\s*(?:(?P<m>\d+)\s*(?:分钟|分|m|min))?\s*(?:(?P<s>\d+)\s*(?:秒|s))?$"
)


def duration_seconds(value: int | str | None, unreadable: UnreadableValues | None = None) -> int | None:
    """``27``, ``"27"``, ``"27秒"`` or ``"1分5秒"`` → seconds; None for none given, and for anything
    else (a negative number, another shape), which is told to ``unreadable``."""
    if value is None:
        return None
    if isinstance(value, int):
        if value >= 0:
            return value
    else:
        text = value.strip()
        if _digits(text):
            return int(text)
        match = _DURATION.match(text)
        if text and match:
            h, m, s = (int(match[g] or 0) for g in ("h", "m", "s"))
            return h * 3600 + m * 60 + s
        if not text:
            return None
    if unreadable is not None:
        unreadable("duration_seconds", value)
    return None


#: the wall-clock shape, with the fraction of a second some servers add (dropped)
_WALL_CLOCK = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?$")


def vendor_time(value: str | int | None, tz: timezone) -> str | None:
    """ISO 8601 with offset, or None where the vendor gave no time (null, ``""``, epoch 0).

    ``"yyyy-MM-dd HH:mm:ss"`` is wall-clock time in ``tz``; digits are epoch milliseconds. Anything
    else raises :class:`UnreadableTime`: passed on as it came, it would break the ``date-time``
    contract, and a wall-clock time with a zone of its own would be read in the wrong one.
    """
    if value is None:
        return None
    if isinstance(value, int) or _digits(value.strip()):
        millis = int(value)
        if millis <= 0:
            return None
        try:
            return datetime.fromtimestamp(millis / 1000, tz).isoformat(timespec="seconds")
        except (OverflowError, OSError, ValueError):
            raise UnreadableTime("epoch milliseconds beyond the calendar") from None
    text = value.strip()
    if not text:
        return None
    if not _WALL_CLOCK.match(text):
        raise UnreadableTime("not a wall-clock time")
    try:
        parsed = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise UnreadableTime("no such day or time") from None
    return parsed.replace(tzinfo=tz).isoformat()


def time_given(value: str | int | None) -> bool:
    """The vendor put something in a time field (readable or not): a call with an end has ended."""
    if isinstance(value, str):
        value = value.strip()
        return bool(value) and not (_digits(value) and int(value) <= 0)
    return value is not None and value > 0


def _event_time(
    value: str | int | None, tz: timezone, field: str, unreadable: UnreadableValues
) -> str | None:
    """An event's time field: the vendor's time, or null (reported) when it cannot be read."""
    try:
        return vendor_time(value, tz)
    except UnreadableTime:
        unreadable(field, value)
        return None


def _order_time(value: str | int | None, tz: timezone) -> str:
    """The key calls without ``callIndex`` are ordered by (never published). It is the key this
    adapter always used, so the order, and the count cursors committed on it, stay valid: a time
    that is not strictly readable is read from its first characters, else kept as written."""
    try:
        return vendor_time(value, tz) or ""
    except UnreadableTime:
        text = str(value).strip()
    try:
        return datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).isoformat()
    except ValueError:
        return text


def _first(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def task_entity(
    company_id: int, listed: TaskInfo, detail: TaskDetail | None, old: EntityState | None
) -> EntitySnapshot:
    """The task as this cycle saw it; counts the vendor left ``null`` keep their committed value."""
    info: TaskInfo = detail if detail is not None and detail.status is not None else listed
    raw = raw_code(info.status)
    counts = [c for c in (detail, listed) if c is not None]
    completed = _first(*(c.doneCount for c in counts), old.completed if old else None)
    total = _first(*(c.totalCount for c in counts), old.total if old else None)
    source = counts[0]
    by_state = {
        outcome.value: count
        for outcome, count in (
            (CallOutcome.ANSWERED, source.calledCount),
            (CallOutcome.REJECTED, source.rejectedCount),
            (CallOutcome.NO_ANSWER, source.unavailableCount),
            (CallOutcome.CALLER_NUMBER_UNAVAILABLE, source.fromUnavailableCount),
        )
        if count is not None
    }
    return EntitySnapshot(
        kind=EntityKind.TASK,
        id=str(listed.callJobId),
        parent_id=str(company_id),
        name=info.jobName or listed.jobName,
        state=STATES.normalize(raw),
        raw_state=raw,
        completed=completed,
        total=total,
        by_state=by_state or None,
    )


def counts_of(entity: EntitySnapshot, old: EntityState | None) -> EntitySnapshot:
    """``entity`` with the counts last committed (none for a new task), so they move with its calls."""
    if old is None:
        return msgspec.structs.replace(entity, completed=None, total=None, by_state=None)
    return msgspec.structs.replace(entity, completed=old.completed, total=old.total, by_state=None)


def call_snapshot(
    item: DoneCall, task_id: str, tz: timezone, detail: CallDetail | None, unreadable: UnreadableValues
) -> CallSnapshot:
    """One finished call; a time or duration that cannot be read is published as null and told to
    ``unreadable``."""
    raw = raw_code(item.finishStatus)
    outcome = OUTCOMES.normalize(raw)
    duration = duration_seconds(item.duration, unreadable)
    return CallSnapshot(
        call_id=str(item.callInstanceId),
        task_id=task_id,
        outcome=outcome,
        raw_outcome=raw,
        failure_reason=None if outcome is CallOutcome.ANSWERED else FINISH_LABELS.get(raw),
        callee_number=item.customerTelephone,
        callee_name=item.customerName,
        duration_seconds=duration,
        started_at=_event_time(item.startTime, tz, "started_at", unreadable),
        ended_at=_event_time(item.endTime, tz, "ended_at", unreadable),
        detail=detail,
        vendor_call_id=str(item.callInstanceId),
        caller_number=item.callerPhone or None,
        talk_seconds=duration,
    )


def call_detail(info: PhoneLogInfo, item: DoneCall) -> CallDetail:
    """Turns are the transcript's utterances when it is there, else the vendor's ``chatRound``."""
    lines = info.phoneLog.phoneLogs if info.phoneLog is not None else None
    scene = info.sceneInstance
    if lines:
        turns: int | None = len(lines)
    else:
        turns = _first(scene.chatRound if scene is not None else None, item.chatRound)
    hung_up_by = HUNG_UP_BY.get(raw_code(scene.hangUp)) if scene is not None else None
    results = {
        r.resultName: r.resultValue
        for r in info.taskResult or []
        if r.resultName is not None and r.resultValue is not None
    }
    return CallDetail(turns=turns, hung_up_by=hung_up_by, results=results)


def _vendor_error(exc: BaseException) -> SourceError | None:
    """The vendor-side failure an exception (or a group of them, from paging) stands for; None if
    anything in it is not a vendor failure."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [_vendor_error(inner) for inner in exc.exceptions]
        errors = [e for e in found if e is not None]
        return errors[0] if errors and len(errors) == len(found) else None
    return None


def _has_total(api: str) -> Callable[[Page[Any]], None]:
    def check(page: Page[Any]) -> None:
        if page.total is None:
            raise BadResponse("page without total", api=api)

    return check


def _index_of(item: DoneCall) -> int:
    assert item.callIndex is not None
    return item.callIndex


def _consecutive(items: list[DoneCall], position: int) -> bool:
    """The calls an ``index`` answer must hold: the next ones after ``position``, each once."""
    return sorted(_index_of(i) for i in items) == list(range(position + 1, position + 1 + len(items)))


def index_faults(items: list[DoneCall], limit: int) -> list[DoneCall]:
    """The calls whose ``callIndex`` cannot be the number the vendor gives a task's calls as they
    end (0, 1, 2, …): negative, not below ``limit`` (the calls the task can have), or shared with
    another call. A cursor moved to such a value would skip calls or publish one twice."""
    shared = Counter(i.callIndex for i in items)
    return [
        i
        for i in items
        if i.callIndex is not None and (not 0 <= i.callIndex < limit or shared[i.callIndex] > 1)
    ]


def _numeric_id(item: DoneCall) -> tuple[int, str]:
    text = str(item.callInstanceId)
    return (int(text), text) if _digits(text) else (-1, text)


# -- the source -------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """What one cycle does for one listed task."""

    task: TaskInfo
    old: EntityState | None
    #: active now or in the committed state: detail and calls every cycle
    active: bool
    fetch: bool
    #: the detail this cycle already read (a task read by id): not asked for again
    detail: TaskDetail | None = None


@dataclass
class _Followed:
    detail: TaskDetail | None
    calls: list[CallSnapshot] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    #: the calls could not be read consistently: the task is followed again next cycle
    unsettled: bool = False
    #: calls remain unread (the page budget ran out, or a run of indexes broke): followed again
    calls_pending: bool = False

    @property
    def calls_behind(self) -> bool:
        return self.unsettled or self.calls_pending

    def holds_counts(self, active: bool) -> bool:
        """Must the task's counts stay as committed? They decide whether its calls are read again.

        Calls left for the next cycle (a backlog bigger than the page budget) hold them until the
        backlog is read; an unsettled listing holds them only for a task at rest, so a running
        task's progress keeps moving while its listing keeps changing under the pages.
        """
        return self.calls_pending or (self.unsettled and not active)


class _Unsettled(Exception):
    """The done-call listing changed while we paged through it: try again next cycle."""


class ByRobotSource(Source):
    """One BYRobot company."""

    vendor = VENDOR

    def __init__(self, config: ByRobotAccount, ctx: AdapterContext) -> None:
        super().__init__(config, ctx, scope=str(config.company_id))
        self.cfg = config
        self.base = config.endpoint.rstrip("/") + PATH_PREFIX
        self.tz = timezone(timedelta(minutes=config.utc_offset_minutes))
        self._limiters = {api: self.limiter(api, config.app_key, limit) for api, limit in APIS.items()}
        #: task id → anyio time after which an idle task is read again
        self._next_idle_read: dict[str, float] = {}
        #: tasks whose detail or calls failed last time: followed next cycle whatever their state
        self._retry: set[str] = set()
        self._failing: set[str] = set()
        #: the server answered a cursor request with calls at or below the cursor
        self.index_ignored = False
        #: a cursor answer was not the calls right after the cursor (logged once)
        self._gaps_reported = False
        self.informer = Informer(
            vendor=VENDOR,
            account=self.account,
            api=TASKS_API,
            kind=EntityKind.TASK,
            live_statuses=LIVE_STATUSES,
            first_number=1,
            page_size=config.page_size,
            max_staleness=config.max_staleness,
            max_entities=config.max_entities,
            lists=self._limiters[TASKS_API],
            by_id=self._limiters[DETAIL_API],  # getTaskDetail: one task per request
            by_id_batch=1,
            rounds=ROUNDS_PER_CYCLE,
            enabled=config.targeted_reads,
            report=self.report_reads,
        )
        #: tasks last seen in a status we do not know: followed by id every cycle, like active ones
        self._unknown: set[str] | None = None
        # what this cycle's reads found: each task as listed (or as its detail says, read by id),
        # the details read by id, and the tasks whose read by id failed on its own
        self._cycle_tasks: dict[str, TaskInfo] = {}
        self._cycle_details: dict[str, TaskDetail] = {}
        self._cycle_failed: dict[str, SourceError] = {}
        self._committed = SourceState()

    @property
    def apis(self) -> tuple[str, ...]:
        return tuple(APIS)

    async def _call(
        self,
        api: str,
        decoder: msgspec.json.Decoder[T],
        *,
        params: Mapping[str, str] | None = None,
        body: msgspec.Struct | None = None,
        check: Callable[[T], None] | None = None,
    ) -> T:
        """One request; ``check`` (the answer's own contract) runs inside the attempt, so an
        answer that breaks it is retried like one that does not decode."""
        payload = msgspec.json.encode(body) if body is not None else None

        def parse(resp: Response) -> T:
            data = read_answer(resp, api, decoder)
            if check is not None:
                check(data)
            return data

        async def prepare() -> tuple[Mapping[str, str], bytes | None]:
            return auth_headers(self.cfg.app_key, self.cfg.app_secret.reveal()), payload

        return await self.send(
            api,
            self._limiters[api],
            "POST" if body is not None else "GET",
            self.base + api,
            parse=parse,
            prepare=prepare,
            params=params,
        )

    # -- tasks --------------------------------------------------------------------------------
    async def _tasks_page(self, number: int, status: str | None = None) -> Page[TaskInfo]:
        params = {
            "companyId": str(self.cfg.company_id),
            "pageNum": str(number),
            "pageSize": str(self.cfg.page_size),
        }
        if status is not None:
            params["status"] = status
        return await self._call(TASKS_API, _decode_tasks, params=params, check=_has_total(TASKS_API))

    async def _detail(self, job_id: int) -> TaskDetail:
        params = {"companyId": str(self.cfg.company_id), "taskId": str(job_id)}

        def of_this_task(detail: TaskDetail) -> None:
            if detail.callJobId != job_id:
                raise BadResponse("detail of another task", api=DETAIL_API)

        return await self._call(DETAIL_API, _decode_detail, params=params, check=of_this_task)

    def _listed(self, task: TaskInfo, detail: TaskDetail | None) -> EntitySnapshot:
        """A task as read, with the counts last committed: what the listing streams to the relist
        pass before the cycle builds the task's final snapshot (only the latter is published)."""
        task_id = str(task.callJobId)
        self._cycle_tasks[task_id] = task
        old = self._committed.entities.get(task_id)
        return counts_of(task_entity(self.cfg.company_id, task, detail, old), old)

    async def _read(self, number: int, status: str | None) -> ListedPage:
        page = await self._tasks_page(number, status)
        return ListedPage(
            snapshots=[self._listed(task, None) for task in page.items or []], total=page.total or 0
        )

    async def _read_ids(self, task_ids: list[str]) -> ReadByIds:
        """Each task's detail; one the vendor does not know is left to the relist, one that fails
        otherwise is followed again (rejected credentials fail the cycle)."""
        found: list[EntitySnapshot] = []
        unread: list[str] = []
        unaskable: list[str] = []
        for task_id in task_ids:
            if not _digits(task_id):
                unaskable.append(task_id)
                continue
            try:
                detail = await self._detail(int(task_id))
            except Exception as exc:
                error = _vendor_error(exc)
                if error is None or isinstance(error, AuthFailed):
                    raise
                if not isinstance(error, ClientError):
                    self._cycle_failed[task_id] = error
                    unread.append(task_id)
                continue
            self._cycle_details[task_id] = detail
            found.append(self._listed(detail, detail))
        return ReadByIds(found=found, unread=unread, unaskable=unaskable)

    def _plan(self, task: TaskInfo, old: EntityState | None, now: float) -> _Plan:
        task_id = str(task.callJobId)
        listed_state = STATES.normalize(raw_code(task.status)).value
        active = listed_state in _ACTIVE or (old is not None and old.state in _ACTIVE)
        counts_moved = old is not None and (
            (task.doneCount is not None and task.doneCount != old.completed)
            or (task.totalCount is not None and task.totalCount != old.total)
        )
        due = self._next_idle_read.get(task_id, float("-inf")) <= now
        fetch = active or counts_moved or due or task_id in self._retry
        return _Plan(task, old, active, fetch, self._cycle_details.get(task_id))

    async def observe(self, committed: SourceState, early: PageSink | None = None) -> Observation:
        self._committed = committed
        self._cycle_tasks, self._cycle_details, self._cycle_failed = {}, {}, {}
        if self._unknown is None:
            unknown = TaskState.UNKNOWN.value
            self._unknown = {t for t, e in committed.entities.items() if e.state == unknown}
        try:
            following = await self.informer.read(
                committed, Listing(None), self._read, self._read_ids, must_read=self._retry | self._unknown
            )
            entities, calls, cursors = await self._follow_tasks(committed)
        except BaseException:
            # nothing of this cycle was published: its relist pages are read again
            self.informer.fail(rewind=True)
            raise
        finally:
            self._committed = SourceState()
        if following:
            self.informer.relist.read(entities)  # the pass keeps the snapshots published, not the listed
        everything, complete = self.informer.end(entities)
        if complete:
            known = {snap.id for snap in everything}
            for task_id in [t for t in self._next_idle_read if t not in known]:
                del self._next_idle_read[task_id]
        return Observation(entities=everything, complete=complete, calls=calls, cursors=cursors)

    async def _follow_tasks(
        self, committed: SourceState
    ) -> tuple[list[EntitySnapshot], list[CallSnapshot], dict[str, int]]:
        """Details and calls of the tasks read this cycle; their snapshots as they are published."""
        started = anyio.current_time()
        plans = {
            tid: self._plan(task, committed.entities.get(tid), started)
            for tid, task in self._cycle_tasks.items()
        }
        followed: dict[str, _Followed] = {}
        failed: dict[str, SourceError] = dict(self._cycle_failed)
        slots = anyio.CapacityLimiter(self.cfg.max_concurrency)

        async def follow(task_id: str, plan: _Plan) -> None:
            async with slots:
                try:
                    followed[task_id] = await self._follow(plan, committed.cursors)
                except Exception as exc:
                    error = _vendor_error(exc)
                    if error is None:
                        raise  # our own bug: the cycle fails loudly
                    failed[task_id] = error

        async with anyio.create_task_group() as tg:
            for task_id, plan in plans.items():
                if plan.fetch:
                    tg.start_soon(follow, task_id, plan)
        auth = [e for e in failed.values() if isinstance(e, AuthFailed)]
        if auth:
            raise auth[0]
        if failed and not followed and not all(isinstance(e, ClientError) for e in failed.values()):
            # nothing but failures: the API itself is in trouble, and that is what health must say
            # (a lone "no such task" answer is not)
            raise next(e for e in failed.values() if not isinstance(e, ClientError))
        self._settle(followed, failed, started)

        entities: list[EntitySnapshot] = []
        calls: list[CallSnapshot] = []
        cursors: dict[str, int] = {}
        unknown = self._unknown
        assert unknown is not None
        for task_id, plan in plans.items():
            result = followed.get(task_id)
            entity = task_entity(self.cfg.company_id, plan.task, result.detail if result else None, plan.old)
            if result is not None and result.holds_counts(entity.state.value in _ACTIVE):
                # a task at rest is asked for calls again only when its counts move: they must not
                # reach the stream before its calls do
                entity = counts_of(entity, plan.old)
            entities.append(entity)
            if entity.state is TaskState.UNKNOWN:
                unknown.add(task_id)
            else:
                unknown.discard(task_id)
            if result is not None:
                calls.extend(result.calls)
                cursors.update(result.cursors)
        return entities, calls, cursors

    def _settle(
        self, followed: Mapping[str, _Followed], failed: Mapping[str, SourceError], started: float
    ) -> None:
        """Schedule the next idle read of what was followed; remember what failed; log changes."""
        for task_id, result in followed.items():
            if result.calls_behind:
                self._retry.add(task_id)
            else:
                self._retry.discard(task_id)
                self._next_idle_read[task_id] = started + self.cfg.detail_interval
        self._retry.update(failed)
        now_failing = set(failed)
        if now_failing - self._failing:
            reasons = sorted({failed[t].reason.value for t in now_failing - self._failing})
            log.warning(
                "task detail or calls failed for some tasks; their counts and cursors are kept",
                extra={
                    "vendor": VENDOR,
                    "account": self.account,
                    "tasks": len(now_failing),
                    "reasons": reasons,
                },
            )
        if self._failing - now_failing:
            log.info("task detail and calls answer again", extra={"vendor": VENDOR, "account": self.account})
        self._failing = now_failing

    async def _follow(self, plan: _Plan, cursors: Mapping[str, int]) -> _Followed:
        detail = plan.detail or await self._detail(plan.task.callJobId)
        task_id = str(plan.task.callJobId)
        state = STATES.normalize(raw_code(detail.status if detail.status is not None else plan.task.status))
        done = _first(detail.doneCount, plan.task.doneCount)
        old = plan.old
        calls_due = (
            plan.active
            or state.value in _ACTIVE
            or old is None
            or task_id in self._retry
            or (done is not None and done != old.completed)
        )
        result = _Followed(detail)
        if not calls_due:
            return result
        counts = (detail.totalCount, detail.doneCount, plan.task.totalCount, plan.task.doneCount)
        try:
            items, result.cursors, result.calls_pending = await self._new_calls(
                plan.task.callJobId, state, cursors, max((c for c in counts if c is not None), default=0)
            )
        except _Unsettled:
            result.unsettled = True
            return result
        details = await self._enrich(items) if self.cfg.enrich_calls else {}
        result.calls = [
            call_snapshot(item, task_id, self.tz, details.get(str(item.callInstanceId)), self.unreadable)
            for item in items
        ]
        return result

    # -- finished calls ---------------------------------------------------------------------------
    async def _calls_page(self, query: DoneCallsQuery) -> Page[DoneCall]:
        return await self._call(CALLS_API, _decode_calls, body=query, check=_has_total(CALLS_API))

    async def _new_calls(
        self, job_id: int, state: TaskState, cursors: Mapping[str, int], counts: int
    ) -> tuple[list[DoneCall], dict[str, int], bool]:
        """The task's calls not yet published, the cursor values that say so once they are, and
        whether calls remain for a later cycle. ``counts``: the most calls the task says it has.

        A task counted by its place in the end-time order (``COUNT_CURSOR``) stays counted so: its
        index cursor no longer says what was published after it."""
        cursor = cursors.get(INDEX_CURSOR.format(job_id), -1)
        if not self.index_ignored and COUNT_CURSOR.format(job_id) not in cursors:
            found = await self._calls_by_index(job_id, cursor)
            if found is not None:
                return found
        return await self._calls_by_paging(job_id, cursor, state, cursors, counts)

    async def _calls_by_index(
        self, job_id: int, cursor: int
    ) -> tuple[list[DoneCall], dict[str, int], bool] | None:
        """Follow the ``index`` cursor (calls with a higher ``callIndex``, in that order).

        None when the server shows it ignores the cursor (a call at or below it came back, or a
        call without a ``callIndex``: every task is paged from then on), or when a page is not the
        calls right after the cursor, each once (a value jumped ahead, or a number is missing or
        shared): this task is paged this cycle, which checks each value against the whole list
        before the cursor passes it. Calls remain when the page budget ran out on a full page.
        """
        size = self.cfg.call_page_size
        position = cursor
        fresh: list[DoneCall] = []
        pending = True
        for _ in range(self.cfg.max_call_pages):
            query = DoneCallsQuery(callJobId=job_id, index=position, pageNum=1, pageSize=size)
            items = (await self._calls_page(query)).items or []
            if any(item.callIndex is None or item.callIndex <= position for item in items):
                if not self.index_ignored:
                    self.index_ignored = True
                    log.warning(
                        "server ignores the queryDoneTaskPhones index cursor; paging through all calls",
                        extra={"vendor": VENDOR, "account": self.account},
                    )
                return None
            if not _consecutive(items, position):
                if not self._gaps_reported:
                    self._gaps_reported = True
                    log.warning(
                        "queryDoneTaskPhones callIndex values not consecutive after the cursor; "
                        "such a task's calls are read by paging",
                        extra={"vendor": VENDOR, "account": self.account},
                    )
                return None
            items.sort(key=_index_of)
            fresh.extend(items)
            if items:
                position = _index_of(items[-1])
            if len(items) < size:
                pending = False
                break
        key = INDEX_CURSOR.format(job_id)
        return fresh, ({key: position} if position != cursor else {}), pending

    async def _calls_by_paging(
        self, job_id: int, cursor: int, state: TaskState, cursors: Mapping[str, int], counts: int
    ) -> tuple[list[DoneCall], dict[str, int], bool]:
        """For a server that ignores ``index``: every page of the task's calls, filtered here.

        With ``callIndex`` on the items, the calls above the committed cursor are new. The cursor
        may pass a call only once it is certain nothing below it is still unseen: when the pages
        agreed on the total and held that many calls, or up to the end of the unbroken run of
        indexes above the cursor (a call that moved between pages while we read shows up next time).
        Only while every value can be the task's numbering: N calls listed whole are numbered
        0…N-1, each once; a list still changing, no more than the task's ``counts`` and the calls
        it lists allow. Any other value is counted as unreadable and the task's calls are counted
        by their end-time order instead, for good.
        """
        size = self.cfg.call_page_size

        async def page(number: int) -> Page[DoneCall]:
            return await self._calls_page(DoneCallsQuery(callJobId=job_id, pageNum=number, pageSize=size))

        sweep = await sweep_pages(
            1, size, page, lambda p: p.total or 0, max_total=self.cfg.max_entities, api=CALLS_API
        )
        unique: dict[str, DoneCall] = {}
        for answer in sweep.pages:
            for item in answer.items or []:
                unique[str(item.callInstanceId)] = item
        settled = sweep.totals_agree and len(unique) == sweep.total
        items = list(unique.values())
        key = COUNT_CURSOR.format(job_id)
        indexed = key not in cursors and bool(items) and all(item.callIndex is not None for item in items)
        faults: list[DoneCall] = []
        if indexed:
            listed = max(sweep.total, len(items))
            numbers = len(items) if settled else min(MAX_CALL_INDEX, max(counts, cursor + 1) + listed)
            faults = index_faults(items, numbers)
            for item in faults:
                self.unreadable("callIndex", item.callIndex)
        if indexed and not faults:
            above = sorted((i for i in items if _index_of(i) > cursor), key=_index_of)
            if not settled:
                run = cursor
                for item in above:
                    if _index_of(item) != run + 1:
                        break
                    run += 1
                above = [i for i in above if _index_of(i) <= run]
            if not above:
                return [], {}, not settled
            return above, {INDEX_CURSOR.format(job_id): _index_of(above[-1])}, not settled
        # No callIndex to trust: the only position a call has is its place among the task's finished
        # calls. Ordered by (end time, id), a newly finished call sorts after every published one, so
        # the number already published is a cursor: skip that many, publish the rest. That needs the
        # whole list (a page that shifted while we read would miscount), and calls ending in the
        # latest second wait for a later call or the task's end, because another call may still end
        # in that same second with a smaller id and sort before them.
        if not settled:
            raise _Unsettled()
        # A task that had an index cursor before: the calls at or below it were published under it
        # (the cursor stays as committed), wherever the end-time order puts them
        numbered = Counter(i.callIndex for i in items)

        def published(item: DoneCall) -> bool:
            index = item.callIndex
            return index is not None and 0 <= index <= cursor and numbered[index] == 1

        ordered = sorted(items, key=lambda i: (_order_time(i.endTime, self.tz), _numeric_id(i)))
        limit = len(ordered)
        if not state.terminal and ordered:
            last = _order_time(ordered[-1].endTime, self.tz)
            while limit > 0 and _order_time(ordered[limit - 1].endTime, self.tz) == last:
                limit -= 1
        seen = cursors.get(key, 0)
        if limit == seen:
            return [], {}, False
        # fewer than before: calls were removed at the vendor; restart the count from here
        return [i for i in ordered[seen:limit] if not published(i)], {key: limit}, False

    async def _enrich(self, items: list[DoneCall]) -> dict[str, CallDetail]:
        """phoneLogInfo of each call; any failure but a refusal for one call fails the task's calls."""
        details: dict[str, CallDetail] = {}
        errors: list[SourceError] = []
        slots = anyio.CapacityLimiter(8)

        async def one(item: DoneCall, scope: anyio.CancelScope) -> None:
            call_id = str(item.callInstanceId)
            async with slots:
                try:
                    info = await self._call(
                        PHONE_LOG_API, _decode_phone_log, params={"callInstanceId": call_id}
                    )
                except ClientError:
                    return  # the vendor will not give this one's detail: publish the call without it
                except SourceError as error:
                    errors.append(error)
                    scope.cancel()
                    return
            details[call_id] = call_detail(info, item)

        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(one, item, tg.cancel_scope)
        if errors:
            raise errors[0]
        return details


def build_sources(config: ByRobotAccount, ctx: AdapterContext) -> list[Source]:
    return [ByRobotSource(config, ctx)]


#: request limits per second: not published by the vendor, so a conservative default per API
APIS: Mapping[str, int] = {TASKS_API: 20, DETAIL_API: 20, CALLS_API: 20, PHONE_LOG_API: 20}

VENDOR_SPEC = Vendor(
    name=VENDOR,
    account_config=ByRobotAccount,
    sources=build_sources,
    apis=APIS,
    doc="BYRobot OpenAPI v1: getTasks/getTaskDetail per company, queryDoneTaskPhones index cursor",
)
