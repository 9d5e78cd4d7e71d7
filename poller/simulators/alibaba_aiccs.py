"""Alibaba Cloud AICCS simulator: ``ListTask`` with ``PageNo``/``PageSize`` from 1, 500 req/s API-wide.

The vendor documents the limit as "单用户不限流" with 500/s for the API across all users, so the
window is shared by every credential (:meth:`AiccsSimulator.limit_key`). ``GmtCreate``/``FireTime``
are strings of epoch milliseconds, as the vendor sends them, whether or not ``stringly`` is on.

``ListTask`` filters as documented: ``Status`` is one exact status (another value is a
``ParameterError``), ``TaskId`` one task id, ``TaskName`` a part of the name, ``RobotName`` the
robot's name; the filters combine, and the filtered list is paged like the whole one (``Total`` is
the filtered count). ``honor_status_filter=False`` models a server that ignores ``Status``;
``filed_status`` one whose filter index lags behind its records (a task filed there is matched by
that status, and answered with its own); ``on_list`` runs before each ``ListTask`` answer (a test's
hook to create or delete tasks while a listing is paged).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from poller.simulators.alibaba_common import AlibabaSimulator, Params, int_param
from poller.simulators.base import DemoSetup, ListingRead
from poller.vendors.alibaba_aiccs import DETAIL_API, LIST_API, VERSION
from schemas.vendors.alibaba import (
    ListTaskDetailResponse,
    ListTaskResponse,
    TaskDetailPage,
    TaskDetailRecord,
    TaskPage,
    TaskRecord,
)

STATUSES = ("INIT", "RELEASE", "READY", "RUNNING", "STOP", "SYSTEM_STOP", "CANCEL", "SYSTEM_CANCEL", "DONE")
NEXT_STATUSES: dict[str, tuple[str, ...]] = {
    "INIT": ("RELEASE",),
    "RELEASE": ("READY",),
    "READY": ("RUNNING",),
    "RUNNING": ("RUNNING", "RUNNING", "STOP", "SYSTEM_STOP", "DONE", "CANCEL"),
    "STOP": ("RUNNING", "CANCEL"),
    "SYSTEM_STOP": ("RUNNING", "SYSTEM_CANCEL"),
}


#: (StatusCode, StatusCodeDesc) a simulated attempt ends with; heard messages dominate
STATUS_CODES = (
    ("200000", "用户听完语音"),
    ("200000", "用户听完语音"),
    ("200001", "用户提前挂机"),
    ("200002", "用户占线"),
    ("200003", "用户未接听"),
    ("200004", "用户号码不合法"),
    ("200010", "关机"),
    ("200011", "停机"),
)
BEIJING = timezone(timedelta(hours=8))


@dataclass
class SimTask:
    task_id: int
    name: str
    status: str = "INIT"
    robot_id: int = 1
    robot_name: str = "机器人"
    gmt_create: int = 0
    fire_time: int = 0
    total: int = 10
    complete: int = 0
    #: one per callee, by detail id
    details: dict[int, TaskDetailRecord] = field(default_factory=dict)

    def wire(self) -> TaskRecord:
        return TaskRecord(
            Id=self.task_id,
            TaskName=self.name,
            Status=self.status,
            RobotId=self.robot_id,
            RobotName=self.robot_name,
            GmtCreate=self.gmt_create,
            FireTime=self.fire_time,
            TotalCount=self.total,
            CompleteCount=self.complete,
        )


class AiccsSimulator(AlibabaSimulator):
    vendor = "alibaba-aiccs"
    total_fields = frozenset({"Total"})
    list_fields = frozenset({"Record"})
    product = "aiccs"
    version = VERSION
    host_id = "aiccs.aliyuncs.com"
    #: the vendor sends these as strings of epoch ms even where the rest are numbers
    string_fields = frozenset({"GmtCreate", "FireTime"})

    def __init__(
        self,
        *,
        credentials: dict[str, str],
        seed: int = 0,
        rate_limit: int = 500,
        max_page_size: int = 100,
        stringly: bool = False,
        honor_status_filter: bool = True,
    ) -> None:
        super().__init__(
            credentials=credentials, seed=seed, rate_limits={LIST_API: rate_limit}, stringly=stringly
        )
        self.honor_status_filter = honor_status_filter
        #: task id → the status the filter still files it under (its record may have moved on)
        self.filed_status: dict[int, str] = {}
        #: called with (page number, filters) before each ListTask answer is built
        self.on_list: Callable[[int, tuple[tuple[str, str], ...]], None] | None = None
        #: access key id → task id → task: each key sees its own account's tasks
        self.tasks: dict[str, dict[int, SimTask]] = {ak: {} for ak in credentials}
        #: access keys whose RAM policy lacks aiccs:ListTask
        self.denied: set[str] = set()
        self.max_page_size = max_page_size
        self._next_id = 100000
        self._next_detail = 5000000
        self.actions[LIST_API] = self._list_task
        self.actions[DETAIL_API] = self._list_task_detail
        self.rate_limits[DETAIL_API] = rate_limit

    def limit_key(self, api: str, credential: str) -> tuple[str, str]:
        return (LIST_API, "*")  # one window for both actions and every user

    # -- the world ---------------------------------------------------------------------------------
    def _owner(self, owner: str | None) -> str:
        return owner if owner is not None else next(iter(self.credentials))

    def add_task(
        self,
        name: str | None = None,
        *,
        status: str = "INIT",
        total: int = 10,
        complete: int = 0,
        owner: str | None = None,
    ) -> int:
        self._next_id += 1
        now_ms = int(time.time() * 1000)
        task = SimTask(
            task_id=self._next_id,
            name=name or f"任务{self._next_id}",
            status=status,
            robot_id=7,
            gmt_create=now_ms,
            fire_time=now_ms,
            total=total,
            complete=complete,
        )
        for n in range(total):
            self._next_detail += 1
            task.details[self._next_detail] = TaskDetailRecord(
                Id=self._next_detail, Status="INIT", Called=f"1390{task.task_id % 100000:05d}{n:02d}"
            )
        self.tasks.setdefault(self._owner(owner), {})[task.task_id] = task
        return task.task_id

    def call(
        self,
        task_id: int,
        *,
        status_code: tuple[str, str] | None = None,
        duration: int = 15,
        ended: datetime | None = None,
    ) -> TaskDetailRecord:
        """The next callee's next attempt ends: a callee not called yet, else a failed one retried."""
        task = self.task(task_id)
        pending = [d for d in task.details.values() if d.Status == "INIT"]
        retry = [d for d in task.details.values() if d.Status == "FAIL"]
        detail = (pending or retry or list(task.details.values()))[0]
        code, desc = status_code or self.rng.choice(STATUS_CODES)
        end = (ended or datetime.now(BEIJING)).astimezone(BEIJING)
        heard = code in ("200000", "200001")
        record = TaskDetailRecord(
            Id=detail.Id,
            Status="SUCCESS" if heard else "FAIL",
            StatusCode=code,
            StatusCodeDesc=desc,
            Called=detail.Called,
            Caller="057188880000",
            Direction="User" if heard else None,
            Duration=duration if heard else 0,
            StartTime=(end - timedelta(seconds=duration + 5)).strftime("%Y-%m-%d %H:%M:%S"),
            EndTime=end.strftime("%Y-%m-%d %H:%M:%S"),
            RetryCurTimes=(detail.RetryCurTimes + 1)
            if detail.Status == "FAIL" and detail.RetryCurTimes is not None
            else 0,
            RetryTimes=2,
        )
        task.details[detail.Id] = record
        task.complete = sum(1 for d in task.details.values() if d.Status != "INIT")
        return record

    def task(self, task_id: int) -> SimTask:
        for tasks in self.tasks.values():
            if task_id in tasks:
                return tasks[task_id]
        raise KeyError(task_id)

    def set_task(self, task_id: int, *, status: str | None = None, complete: int | None = None) -> None:
        task = self.task(task_id)
        if status is not None:
            task.status = status
        if complete is not None:
            task.complete = complete

    def remove_task(self, task_id: int) -> None:
        for tasks in self.tasks.values():
            tasks.pop(task_id, None)

    def evolve(self) -> list[tuple[int, str, str]]:
        """One seeded step per live task: status moves, running tasks complete calls."""
        changes = []
        for tasks in self.tasks.values():
            for task in tasks.values():
                if task.status == "RUNNING" and task.complete < task.total:
                    for _ in range(self.rng.randint(0, 3)):
                        self.call(task.task_id)
                options = NEXT_STATUSES.get(task.status, ())
                if not options or self.rng.random() >= 0.3:
                    continue
                new = self.rng.choice(options)
                if new == "DONE" and task.complete < task.total:
                    new = "RUNNING"
                if new != task.status:
                    changes.append((task.task_id, task.status, new))
                    task.status = new
        return changes

    # -- ListTask ----------------------------------------------------------------------------------
    async def _list_task(self, credential: str, params: Params) -> web.StreamResponse:
        if credential in self.denied:
            return self.error("PermissionInsufficient")
        try:
            number = int_param(params, "PageNo", 1)
            size = int_param(params, "PageSize", 20)
            task_id = int_param(params, "TaskId")
        except ValueError:
            return self.error("ParameterError")
        assert number is not None and size is not None
        if number < 1 or not 1 <= size <= self.max_page_size:
            return self.error("ParameterError")
        status, name, robot = params.get("Status"), params.get("TaskName"), params.get("RobotName")
        if status and status not in STATUSES:
            return self.error("ParameterError")
        given = (("Status", status), ("TaskId", task_id), ("TaskName", name), ("RobotName", robot))
        filters = tuple((key, str(value)) for key, value in given if value not in (None, ""))
        self.listing_reads.append(ListingRead(time.monotonic(), LIST_API, filters, number))
        if self.on_list is not None:
            self.on_list(number, filters)
        if not self.honor_status_filter:
            status = None
        filed = self.filed_status
        tasks = [
            t
            for t in sorted(self.tasks.get(credential, {}).values(), key=lambda t: t.task_id)
            if (not status or filed.get(t.task_id, t.status) == status)
            and (task_id is None or t.task_id == task_id)
            and (not name or name in t.name)
            and (not robot or robot == t.robot_name)
        ]
        start = (number - 1) * size
        answer = ListTaskResponse(
            RequestId=str(uuid.uuid4()).upper(),
            Code="OK",
            Message="OK",
            Success=True,
            Data=TaskPage(
                PageNo=number,
                PageSize=size,
                Total=len(tasks),
                Record=[t.wire() for t in tasks[start : start + size]],
            ),
        )
        return self.ok(answer)

    # -- ListTaskDetail ----------------------------------------------------------------------------
    async def _list_task_detail(self, credential: str, params: Params) -> web.StreamResponse:
        if credential in self.denied:
            return self.error("PermissionInsufficient")
        try:
            number = int_param(params, "PageNo", 1)
            size = int_param(params, "PageSize", 20)
            task_id = int_param(params, "TaskId")
            detail_id = int_param(params, "Id")
        except ValueError:
            return self.error("ParameterError")
        assert number is not None and size is not None
        if task_id is None or number < 1 or not 1 <= size <= self.max_page_size:
            return self.error("ParameterError")
        task = self.tasks.get(credential, {}).get(task_id)
        if task is None:
            return self.error("ParameterError")
        status, code, called = params.get("Status"), params.get("StatusCode"), params.get("Called")
        details = [
            d
            for d in sorted(task.details.values(), key=lambda d: d.Id)
            if (not status or d.Status == status)
            and (not code or d.StatusCode == code)
            and (not called or d.Called == called)
            and (detail_id is None or d.Id == detail_id)
        ]
        start = (number - 1) * size
        answer = ListTaskDetailResponse(
            RequestId=str(uuid.uuid4()).upper(),
            Code="OK",
            Message="OK",
            Success=True,
            Data=TaskDetailPage(
                PageNo=number, PageSize=size, Total=len(details), Record=details[start : start + size]
            ),
        )
        return self.ok(answer)


def demo_setup(seed: int) -> DemoSetup:

    access_key_id, secret = "LTAIdemoAiccs", "demo-aiccs-secret"
    sim = AiccsSimulator(credentials={access_key_id: secret}, seed=seed)
    for n in range(4):
        sim.add_task(f"演示任务{n + 1}", total=20)

    def sources(url: str) -> list[dict[str, Any]]:
        return [
            {
                "vendor": "alibaba-aiccs",
                "account": "demo",
                "access_key_id": access_key_id,
                "access_key_secret": secret,
                "endpoint": url,
                "poll_interval": 1.0,
            }
        ]

    def evolve() -> None:
        sim.evolve()
        if sim.rng.random() < 0.1:
            sim.add_task(total=20)

    return DemoSetup(sim, sources, evolve)
