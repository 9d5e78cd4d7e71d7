"""BYRobot (百应) OpenAPI v1 simulator: appkey/datetime/sign headers, envelope errors, the index cursor.

Speaks ``getTasks``, ``getTaskDetail``, ``queryDoneTaskPhones`` and ``phoneLogInfo`` under
``/openapi/v1/task/``. Tasks move 0 → 1 → (4/5 ↔ 1) → 2 or 6 and running tasks finish calls, each
with the next ``callIndex`` of its task; the counts follow the calls. Switches model servers that
differ from the doc: ``honor_index=False`` ignores the cursor (and lists newest first, as the doc's
example does), ``send_call_index=False`` leaves ``callIndex`` out, ``counts_in_list`` says whether
getTasks carries the counts (the doc's example has ``null``), ``string_codes`` sends status codes as
strings (as the field tables type them), ``errors_as_http_status`` answers errors with the envelope
code as HTTP status too (the Java demo reads an error stream), and :meth:`ByRobotSimulator.write_times`
writes one call's times in a shape the doc does not describe, :meth:`ByRobotSimulator.renumber` gives
one call another ``callIndex`` (the server then files and sends it under that number). The error
codes (401 auth, 403 other company, 400 bad parameter, 404 unknown id, 429 throttled, 500 internal)
are our choice: the vendor does not document them.

``getTasks`` filters as documented: ``status`` is one task status (an integer; anything else is a
bad parameter), ``taskName`` a part of the name; the filtered list is paged like the whole one
(``total`` and ``pages`` count the filtered tasks). ``honor_status_filter=False`` models a server
that ignores ``status``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec
from aiohttp import web

from poller.simulators.base import DemoSetup, Fault, ListingRead, Simulator, json_response
from poller.simulators.push import Pusher, PushPlan
from poller.vendors.byrobot import (
    APIS,
    CALLS_API,
    DETAIL_API,
    PATH_PREFIX,
    PHONE_LOG_API,
    TASKS_API,
    sign,
)
from schemas.vendors.byrobot import (
    CallPhone,
    DoneCall,
    DoneCallsQuery,
    Envelope,
    NameValue,
    Page,
    PhoneLog,
    PhoneLogInfo,
    PhoneLogLine,
    ResultDef,
    SceneInstance,
    TaskDetail,
    TaskInfo,
    TaskResultItem,
)

CST = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: default tolerated clock skew of the ``datetime`` header, in seconds (the vendor's is unpublished)
MAX_SKEW = 900.0
#: weights of finishStatus 0–10 for calls finished by :meth:`ByRobotSimulator.evolve`
FINISH_WEIGHTS = (40, 10, 15, 2, 5, 6, 8, 3, 6, 1, 4)
INTENT_LEVELS = ("A级(较强)", "B级(一般)", "C级(较弱)")
_SURNAMES = "王李张刘陈杨黄赵吴周"

CODE_OK = 200
CODE_BAD_PARAMETER = 400
CODE_AUTH = 401
CODE_FORBIDDEN = 403
CODE_NOT_FOUND = 404
CODE_THROTTLED = 429
CODE_INTERNAL = 500


@dataclass
class SimCall:
    """One callee of a task; finished once ``status`` is 2."""

    instance_id: int
    phone: str
    name: str
    status: int = 0
    finish_status: int | None = None
    duration: int = 0
    chat_round: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    call_index: int | None = None
    hang_up: int = 0
    results: dict[str, str] = field(default_factory=dict)
    #: (speaker, content) of each utterance
    lines: list[tuple[str, str]] = field(default_factory=list)
    #: what the server writes as startTime / endTime instead of the real times (a test's odd values)
    start_text: str | int | None = None
    end_text: str | int | None = None

    def written_times(self) -> tuple[str | int, str | int]:
        """startTime and endTime as the answers and callbacks carry them."""
        assert self.started is not None and self.ended is not None
        start = self.start_text if self.start_text is not None else self.started.strftime(TIME_FORMAT)
        end = self.end_text if self.end_text is not None else self.ended.strftime(TIME_FORMAT)
        return start, end


@dataclass
class SimTask:
    task_id: int
    company_id: int
    name: str
    status: int = 0
    job_type: int = 2
    start_date: str = ""
    caller_phone: str = ""
    calls: list[SimCall] = field(default_factory=list)
    next_index: int = 0

    def done(self) -> list[SimCall]:
        return [c for c in self.calls if c.status == 2]

    def count(self, finish_status: int) -> int:
        return sum(1 for c in self.calls if c.status == 2 and c.finish_status == finish_status)


@dataclass
class SimCompany:
    company_id: int
    app_key: str
    tasks: dict[int, SimTask] = field(default_factory=dict)


class _BadParameter(Exception):
    pass


def _int_param(request: web.Request, name: str, default: int | None = None) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        if default is None:
            raise _BadParameter(f"{name}不能为空")
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise _BadParameter(f"{name}格式错误") from exc


#: BYRobot's callback policy, scaled from minutes to tenths of a second: after 1, 2, 4, 8 minutes,
#: then every 8, up to 10 sends in all
CALLBACK_RETRY_DELAYS = (0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8)


class ByRobotSimulator(Simulator):
    vendor = "byrobot"
    total_fields = frozenset({"total"})
    list_fields = frozenset({"list"})

    def __init__(
        self,
        *,
        credentials: dict[str, str],
        seed: int = 0,
        rate_limit: int = 20,
        rate_limits: dict[str, int] | None = None,
        max_skew: float = MAX_SKEW,
        honor_index: bool = True,
        send_call_index: bool = True,
        counts_in_list: bool = False,
        string_codes: bool = False,
        errors_as_http_status: bool = False,
        honor_status_filter: bool = True,
    ) -> None:
        limits = {api: rate_limit for api in APIS}
        limits.update(rate_limits or {})
        super().__init__(seed=seed, rate_limits=limits)
        self.credentials = dict(credentials)
        self.max_skew = max_skew
        self.honor_index = honor_index
        self.send_call_index = send_call_index
        self.counts_in_list = counts_in_list
        self.string_codes = string_codes
        self.errors_as_http_status = errors_as_http_status
        self.honor_status_filter = honor_status_filter
        self.companies: dict[int, SimCompany] = {}
        self.tasks: dict[int, SimTask] = {}
        self.calls: dict[int, tuple[SimTask, SimCall]] = {}
        #: the ``index`` of the latest queryDoneTaskPhones request per task (what the poller committed)
        self.last_index: dict[int, int] = {}
        self._next_task_id = 60
        self._next_instance_id = 480
        self._last_end = datetime.now(CST).replace(microsecond=0) - timedelta(hours=1)
        for api in (TASKS_API, DETAIL_API, PHONE_LOG_API):
            self.app.router.add_get(PATH_PREFIX + api, self._dispatch)
        self.app.router.add_post(PATH_PREFIX + CALLS_API, self._dispatch)
        #: callbacks (信息回调) of finished calls and task changes, when a plan is set
        self.pusher = Pusher(self.rng, lambda status, body: status == 200 and b"success" in body)

    # -- callbacks ---------------------------------------------------------------------------------
    def push_to(self, plan: PushPlan | None) -> None:
        self.pusher.plan = plan

    async def stop(self) -> None:
        await self.pusher.close()
        await super().stop()

    def _callback(self, key: str, data_type: str, data: Any) -> None:
        if self.pusher.plan is None:
            return
        body = msgspec.json.encode({"code": 200, "data": {"dataType": data_type, "data": data}})
        self.pusher.push(key, body, key, {"Content-Type": "application/json;charset=UTF-8"})

    # -- the world -------------------------------------------------------------------------------
    def add_company(self, company_id: int, app_key: str) -> SimCompany:
        if app_key not in self.credentials:
            raise ValueError("the company's app key needs a secret in credentials")
        return self.companies.setdefault(company_id, SimCompany(company_id, app_key))

    def add_task(
        self,
        company_id: int,
        *,
        phones: int = 10,
        status: int = 0,
        name: str | None = None,
        finished: Sequence[int] = (),
    ) -> int:
        """A task with ``phones`` callees; ``finished`` finishStatus values are already done."""
        self._next_task_id += 1
        task_id = self._next_task_id
        task = SimTask(
            task_id=task_id,
            company_id=company_id,
            name=name or f"外呼任务{task_id}",
            status=status,
            job_type=self.rng.choice((1, 2)),
            start_date=self._last_end.strftime("%Y-%m-%d"),
            caller_phone=self._phone(),
        )
        for _ in range(phones):
            self._next_instance_id += 1
            call = SimCall(self._next_instance_id, self._phone(), self._name())
            task.calls.append(call)
            self.calls[call.instance_id] = (task, call)
        self.companies[company_id].tasks[task_id] = task
        self.tasks[task_id] = task
        if finished:
            self.finish_calls(task_id, finished)
        return task_id

    def set_status(self, task_id: int, status: int) -> None:
        task = self.tasks[task_id]
        job = {"callJobId": task_id, "companyId": task.company_id, "jobName": task.name, "status": status}
        self._callback(f"job-{task_id}-{status}", "JOB_INFO_RESULT", job)
        self.tasks[task_id].status = status

    def remove_task(self, task_id: int) -> None:
        task = self.tasks.pop(task_id)
        del self.companies[task.company_id].tasks[task_id]
        for call in task.calls:
            self.calls.pop(call.instance_id, None)

    def write_times(
        self, instance_id: int, *, start: str | int | None = None, end: str | int | None = None
    ) -> None:
        """Make the server write this call's times as given (a time format no doc describes)."""
        call = self.calls[instance_id][1]
        call.start_text, call.end_text = start, end

    def renumber(self, instance_id: int, call_index: int) -> None:
        """Make the server number this finished call ``call_index`` (a number the doc would not give:
        far ahead, repeated, negative), for the cursor and in its answers alike."""
        self.calls[instance_id][1].call_index = call_index

    def finish_calls(self, task_id: int, outcomes: Sequence[int]) -> list[int]:
        """Finish the task's next waiting callees with these finishStatus values, in this order."""
        task = self.tasks[task_id]
        waiting = [c for c in task.calls if c.status != 2]
        if len(outcomes) > len(waiting):
            raise ValueError("more outcomes than callees left")
        finished = []
        for call, outcome in zip(waiting, outcomes, strict=False):
            self._finish(task, call, outcome)
            finished.append(call.instance_id)
        return finished

    def _finish(self, task: SimTask, call: SimCall, outcome: int) -> None:
        answered = outcome == 0
        call.status = 2
        call.finish_status = outcome
        call.duration = self.rng.randint(8, 180) if answered else 0
        call.chat_round = self.rng.randint(1, 12) if answered else 0
        # every call ends at least a second after the previous one: end times are unique
        end = max(datetime.now(CST).replace(microsecond=0), self._last_end + timedelta(seconds=1))
        self._last_end = end
        call.ended = end
        call.started = end - timedelta(seconds=call.duration + self.rng.randint(5, 25))
        call.call_index = task.next_index
        task.next_index += 1
        call.hang_up = self.rng.choice((0, 1)) if answered else 0
        call.results = {"客户意向等级": self.rng.choice(INTENT_LEVELS)} if answered else {}
        call.lines = []
        if answered:
            call.lines.append(("AI", "您好，这里是百应智能客服，请问现在方便吗？"))
            for turn in range(call.chat_round):
                call.lines.append(("ME", self.rng.choice(("嗯", "你说", "多少钱", "不需要"))))
                call.lines.append(("AI", f"好的，第{turn + 1}点是这样的。"))
        self._callback(str(call.instance_id), "CALL_INSTANCE_RESULT", self._info(task, call))

    def evolve(self) -> list[tuple[int, int, int]]:
        """One seeded step of every task; returns (task, old status, new status) of each change."""
        changes = []
        for task in self.tasks.values():
            old = task.status
            roll = self.rng.random()
            if old == 0 and roll < 0.3:
                task.status = 1
            elif old == 1:
                waiting = [c for c in task.calls if c.status != 2]
                if roll < 0.04:
                    task.status = 4
                elif roll < 0.06:
                    task.status = 5
                elif roll < 0.07:
                    task.status = 6
                elif waiting:
                    for call in waiting[: self.rng.randint(0, 2)]:
                        outcome = self.rng.choices(range(len(FINISH_WEIGHTS)), FINISH_WEIGHTS)[0]
                        self._finish(task, call, outcome)
                if task.status == 1 and all(c.status == 2 for c in task.calls):
                    task.status = 2
            elif old in (4, 5) and roll < 0.3:
                task.status = 1
            if task.status != old:
                changes.append((task.task_id, old, task.status))
        return changes

    def _phone(self) -> str:
        return f"1{self.rng.choice('3456789')}{self.rng.randrange(10**9):09d}"

    def _name(self) -> str:
        return self.rng.choice(_SURNAMES) + self.rng.choice(("先生", "女士"))

    # -- protocol --------------------------------------------------------------------------------
    def api_of(self, request: web.Request) -> str:
        path = request.path
        return path[len(PATH_PREFIX) :] if path.startswith(PATH_PREFIX) else path

    def _answer(self, code: int, message: str, data: Any = None) -> web.Response:
        body = msgspec.json.encode(
            Envelope[Any](code=code, data=data, resultMsg=message, errorStackTrace=None)
        )
        status = code if self.errors_as_http_status and code != CODE_OK else 200
        return json_response(body, status, "application/json;charset=UTF-8")

    def error_answer(self, kind: Fault, api: str) -> web.StreamResponse:
        if kind is Fault.THROTTLE:
            return self._answer(CODE_THROTTLED, "请求过于频繁，请稍后再试")
        if kind is Fault.AUTH:
            return self._answer(CODE_AUTH, "签名校验失败")
        return self._answer(CODE_INTERNAL, "系统内部错误")

    def check_auth(self, app_key: str | None, date: str | None, signature: str | None) -> str | None:
        """None if the three headers are good, else why not (the vendor's resultMsg)."""
        if not app_key or not date or not signature:
            return "缺少鉴权参数 appkey/datetime/sign"
        secret = self.credentials.get(app_key)
        if secret is None:
            return "appkey 不存在"
        try:
            sent = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return "datetime 格式错误"
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        if abs(time.time() - sent.timestamp()) > self.max_skew:
            return "datetime 已过期"
        # Ruby's Base64.encode64 ends the signature with a newline: accepted as the vendor does
        given = signature.rstrip("\r\n")
        if not hmac.compare_digest(given.encode(), sign(app_key, secret, date).encode()):
            return "签名校验失败"
        return None

    async def authenticate(self, request: web.Request, body: bytes) -> str | web.StreamResponse:
        headers = request.headers
        app_key = headers.get("appkey")
        problem = self.check_auth(app_key, headers.get("datetime"), headers.get("sign"))
        if problem is not None:
            return self._answer(CODE_AUTH, problem)
        assert app_key is not None
        return app_key

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        api = self.api_of(request)
        try:
            if api == TASKS_API:
                return self._get_tasks(request)
            if api == DETAIL_API:
                return self._get_task_detail(request)
            if api == CALLS_API:
                return self._query_done_calls(request, await request.read())
            return self._phone_log_info(request)
        except _BadParameter as exc:
            return self._answer(CODE_BAD_PARAMETER, f"参数错误: {exc}")

    def _company(self, request: web.Request, company_id: int) -> SimCompany | web.Response:
        company = self.companies.get(company_id)
        if company is None:
            return self._answer(CODE_NOT_FOUND, "公司不存在")
        # the middleware authenticated this header before any handler runs
        if company.app_key != request.headers.get("appkey"):
            return self._answer(CODE_FORBIDDEN, "无权访问该公司")
        return company

    def _code(self, value: int) -> int | str:
        return str(value) if self.string_codes else value

    def _task_info(self, task: SimTask, *, counts: bool) -> dict[str, Any]:
        done = task.done()
        fields: dict[str, Any] = {
            "callJobId": task.task_id,
            "jobName": task.name,
            "jobType": task.job_type,
            "startDate": task.start_date,
            "workingStartTime": "09:00:00",
            "workingEndTime": "21:00:00",
            "breakStartTime": "12:00:00",
            "breakEndTime": "13:30:00",
            "status": self._code(task.status),
            "sceneDefId": 1,
            "remark": "",
            "totalCount": len(task.calls) if counts else None,
            "doneCount": len(done) if counts else None,
            "calledCount": task.count(0) if counts else None,
            "rejectedCount": task.count(1) if counts else None,
            "unavailableCount": task.count(2) if counts else None,
            "fromUnavailableCount": task.count(3) if counts else None,
            "callPhones": None,
        }
        return fields

    def _get_tasks(self, request: web.Request) -> web.Response:
        company = self._company(request, _int_param(request, "companyId"))
        if isinstance(company, web.Response):
            return company
        page_num = _int_param(request, "pageNum", 1)
        page_size = _int_param(request, "pageSize", 10)
        if page_num < 1 or not 1 <= page_size <= 100:
            raise _BadParameter("pageNum从1开始, pageSize取值1-100")
        given = request.query.get("status")
        wanted = None if given in (None, "") else _int_param(request, "status")
        name = request.query.get("taskName")
        filters = tuple(
            (k, str(v)) for k, v in (("status", wanted), ("taskName", name)) if v not in (None, "")
        )
        self.listing_reads.append(ListingRead(time.monotonic(), TASKS_API, filters, page_num))
        tasks = sorted(company.tasks.values(), key=lambda t: t.task_id, reverse=True)
        if wanted is not None and self.honor_status_filter:
            tasks = [t for t in tasks if t.status == wanted]
        if name:
            tasks = [t for t in tasks if name in t.name]
        start = (page_num - 1) * page_size
        chosen = tasks[start : start + page_size]
        items = [TaskInfo(**self._task_info(t, counts=self.counts_in_list)) for t in chosen]
        return self._answer(CODE_OK, "操作成功", _page(items, page_num, page_size, len(tasks)))

    def _get_task_detail(self, request: web.Request) -> web.Response:
        company = self._company(request, _int_param(request, "companyId"))
        if isinstance(company, web.Response):
            return company
        task = company.tasks.get(_int_param(request, "taskId"))
        if task is None:
            return self._answer(CODE_NOT_FOUND, "任务不存在")
        done = task.done()
        short = sum(1 for c in done if c.duration < 10)
        levels = [c.results.get("客户意向等级") for c in done]
        detail = TaskDetail(
            **self._task_info(task, counts=True)
            | {
                "callPhones": [
                    CallPhone(
                        jobPhoneId=task.task_id * 10,
                        userPhoneId=1,
                        callJobId=task.task_id,
                        phone=task.caller_phone,
                        phoneName="sim1",
                        gmtCreate=task.start_date + " 09:00:00",
                        gmtModified=task.start_date + " 09:00:00",
                    )
                ],
                "sceneDefName": "产品推广",
            },
            robotDefName="产品电销",
            sceneRecordName="产品推广(标准版)",
            durationStat=[
                NameValue(name="<10s", value=short),
                NameValue(name=">=10s", value=len(done) - short),
            ],
            chatRoundStat=[NameValue(name="0-9次", value=sum(1 for c in done if c.chat_round < 10))],
            resultDefs=[ResultDef(name="客户意向等级", values=list(INTENT_LEVELS))],
            extraStat={
                "客户意向等级": [NameValue(name=level, value=levels.count(level)) for level in INTENT_LEVELS]
            },
        )
        return self._answer(CODE_OK, "操作成功", detail)

    def _query_done_calls(self, request: web.Request, body: bytes) -> web.Response:
        try:
            query = msgspec.json.decode(body, type=DoneCallsQuery)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _BadParameter("请求体格式错误") from exc
        task = self.tasks.get(query.callJobId)
        if task is None:
            return self._answer(CODE_NOT_FOUND, "任务不存在")
        company = self._company(request, task.company_id)
        if isinstance(company, web.Response):
            return company
        page_num = query.pageNum if query.pageNum is not None else 1
        page_size = query.pageSize if query.pageSize is not None else 10
        if page_num < 1 or not 1 <= page_size <= 50:
            raise _BadParameter("pageNum从1开始, pageSize取值1-50")
        index = query.index if query.index is not None else -1
        self.last_index[task.task_id] = index
        calls = task.done()
        if query.finishStatus is not None:
            calls = [c for c in calls if str(c.finish_status) == str(query.finishStatus)]
        if query.durationLeft is not None:
            calls = [c for c in calls if c.duration >= query.durationLeft]
        if query.durationRight is not None:
            calls = [c for c in calls if c.duration <= query.durationRight]
        if query.chatRoundLeft is not None:
            calls = [c for c in calls if c.chat_round >= query.chatRoundLeft]
        if query.chatRoundRight is not None:
            calls = [c for c in calls if c.chat_round <= query.chatRoundRight]
        if self.honor_index:
            calls = sorted((c for c in calls if (c.call_index or 0) > index), key=lambda c: c.call_index or 0)
        else:
            calls = sorted(calls, key=lambda c: c.call_index or 0, reverse=True)
        start = (page_num - 1) * page_size
        items = [self._done_call(task, c) for c in calls[start : start + page_size]]
        return self._answer(CODE_OK, "操作成功", _page(items, page_num, page_size, len(calls)))

    def _done_call(self, task: SimTask, call: SimCall) -> DoneCall:
        assert call.finish_status is not None and call.ended is not None and call.started is not None
        start, end = call.written_times()
        return DoneCall(
            callInstanceId=call.instance_id,
            sceneDefId=1,
            callJobId=task.task_id,
            customerTelephone=call.phone,
            customerName=call.name,
            status=self._code(call.status),
            finishStatus=self._code(call.finish_status),
            duration=f"{call.duration}秒",
            chatRound=call.chat_round,
            startTime=start,
            endTime=end,
            callerPhone=task.caller_phone,
            callIndex=call.call_index if self.send_call_index else None,
            luyinOssUrl=f"https://byrobot-sim.oss-cn-hangzhou.aliyuncs.com/RobotPhoneCommunicate/{call.instance_id}.mp3",
            secondaryCallTime="1970-01-01 00:00:00",
            secondaryCallTimes=0,
            gmtCreate=task.start_date + " 09:00:00",
            gmtModified=call.ended.strftime(TIME_FORMAT),
            jobName=task.name,
            resultList=[NameValue(name=k, value=v) for k, v in call.results.items()],
        )

    def _phone_log_info(self, request: web.Request) -> web.Response:
        found = self.calls.get(_int_param(request, "callInstanceId"))
        if found is None or found[1].status != 2:
            return self._answer(CODE_NOT_FOUND, "通话记录不存在")
        task, call = found
        company = self._company(request, task.company_id)
        if isinstance(company, web.Response):
            return company
        return self._answer(CODE_OK, "获取成功", self._info(task, call))

    def _info(self, task: SimTask, call: SimCall) -> PhoneLogInfo:
        """The phoneLogInfo answer of a finished call (also what its callback carries)."""
        assert call.ended is not None and call.started is not None and call.finish_status is not None
        start, end = call.written_times()
        offset = 0
        lines = []
        for number, (speaker, content) in enumerate(call.lines):
            lines.append(
                PhoneLogLine(
                    sceneInstanceLogId=call.instance_id * 100 + number,
                    sceneInstanceId=call.instance_id,
                    speaker=speaker,
                    content=content,
                    userMean="~" if speaker == "ME" else None,
                    aiUnknown=(0 if self.string_codes else False),
                    startTime=offset,
                    endTime=offset + 900,
                    gmtCreate=call.started.strftime(TIME_FORMAT),
                    gmtModified=call.started.strftime(TIME_FORMAT),
                )
            )
            offset += 1200
        recording = (
            f"https://byrobot-sim.oss-cn-hangzhou.aliyuncs.com/RobotPhoneCommunicate/{call.instance_id}.wav"
        )
        info = PhoneLogInfo(
            phoneLog=PhoneLog(phoneLogs=lines, luyinOssUrl=recording),
            sceneInstance=SceneInstance(
                callInstanceId=call.instance_id,
                companyId=task.company_id,
                callJobId=task.task_id,
                customerTelephone=call.phone,
                customerName=call.name,
                status=self._code(call.status),
                finishStatus=self._code(call.finish_status),
                duration=call.duration,
                chatRound=call.chat_round,
                startTime=start,
                endTime=end,
                callerPhone=task.caller_phone,
                luyinOssUrl=recording,
                properties="{}",
                callType=1,
                readStatus=0,
                jobName=task.name,
                robotDefId=6,
                sceneDefId=1,
                sceneRecordId=1,
                hangUp=self._code(call.hang_up),
                secondaryCallTime="1970-01-01 00:00:00",
                secondaryCallTimes=0,
            ),
            taskResult=[
                TaskResultItem(
                    sceneInstanceResultId=call.instance_id * 10 + n,
                    companyId=task.company_id,
                    sceneInstanceId=call.instance_id,
                    resultName=k,
                    resultValue=v,
                )
                for n, (k, v) in enumerate(call.results.items())
            ],
        )
        return info


def _page(items: list[Any], page_num: int, page_size: int, total: int) -> Page[Any]:
    start_row = (page_num - 1) * page_size + 1 if items else 0
    return Page[Any](
        pageNum=page_num,
        pageSize=page_size,
        size=len(items),
        orderBy=None,
        startRow=start_row,
        endRow=start_row + len(items) - 1 if items else 0,
        total=total,
        pages=-(-total // page_size),
        items=items,
    )


DEMO_COMPANY = 10001
DEMO_APP_KEY = "byrobot-demo-appkey"
DEMO_APP_SECRET = "byrobot-demo-app-secret"


def demo_setup(seed: int) -> DemoSetup:

    sim = ByRobotSimulator(credentials={DEMO_APP_KEY: DEMO_APP_SECRET}, seed=seed)
    sim.add_company(DEMO_COMPANY, DEMO_APP_KEY)
    sim.add_task(DEMO_COMPANY, phones=6, status=2, name="老客户回访", finished=(0, 1, 2, 0, 6, 0))
    sim.add_task(DEMO_COMPANY, phones=12, status=1, name="新品推广", finished=(0, 2))
    sim.add_task(DEMO_COMPANY, phones=15, status=1, name="会员续费提醒")
    sim.add_task(DEMO_COMPANY, phones=10, status=4, name="满意度调查", finished=(0,))
    sim.add_task(DEMO_COMPANY, phones=8, status=0, name="活动邀约")

    def sources(url: str) -> list[dict[str, Any]]:
        return [
            {
                "vendor": "byrobot",
                "account": "demo",
                "company_id": DEMO_COMPANY,
                "app_key": DEMO_APP_KEY,
                "app_secret": DEMO_APP_SECRET,
                "endpoint": url,
                "poll_interval": 1.0,
                "enrich_calls": True,
            }
        ]

    def evolve() -> None:
        sim.evolve()
        if sim.rng.random() < 0.05:
            sim.add_task(DEMO_COMPANY, phones=sim.rng.randint(5, 15))

    token = "demo-callback-token-0123456789"

    def start_push(base_url: str) -> None:
        # a third of the callbacks lost: those calls arrive by polling instead
        url = f"{base_url}/push/byrobot/demo?token={token}"
        sim.push_to(PushPlan(url, drop=0.33, retry_delays=CALLBACK_RETRY_DELAYS))

    receivers = [{"vendor": "byrobot", "account": "demo", "token": token}]
    return DemoSetup(sim, sources, evolve, receivers, start_push)
