"""Tencent Cloud CCC simulator: API 3.0 envelope, TC3 verification, 0-based pages, 20 req/s."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from poller.simulators.base import DemoSetup, Fault, ListingRead, Simulator, json_response
from poller.simulators.push import Pusher, PushPlan, PushRecord
from poller.vendors.tencent_ccc import (
    CDR_API,
    LIST_API,
    SERVICE,
    TASK_API,
    tc3_signature,
    tc3_string_to_sign,
)
from schemas.vendors.tencent_ccc import (
    AutoCalloutTaskCalleeInfo,
    AutoCalloutTaskInfo,
    DescribeAutoCalloutTaskRequest,
    DescribeAutoCalloutTasksRequest,
    DescribeTelCdrRequest,
    TelCdrInfo,
)

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)/tc3_request,"
    r"\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
MAX_SKEW = 300
#: the evolution a real task follows; 5 (paused) can come back to 1
NEXT_STATES = {0: (1,), 1: (1, 1, 2, 5, 3), 5: (1,), 3: (4,), 2: (), 4: ()}


#: (EndStatus, EndStatusString) a simulated outbound call ends with; answered calls dominate
END_STATUSES = (
    (1, "ok"),
    (1, "ok"),
    (1, "ok"),
    (202, "notAnswer"),
    (203, "userReject"),
    (204, "powerOff"),
    (205, "numberNotExist"),
    (206, "busy"),
    (207, "outOfCredit"),
    (222, "voiceMailReached"),
)


@dataclass
class SimCallee:
    number: str
    #: 0 initial, 1 answered, 2 not answered, 3 calling, 4 to retry
    state: int = 0
    sessions: list[str] = field(default_factory=list)


@dataclass
class SimTask:
    task_id: int
    name: str
    state: int = 0
    callee_count: int = 1
    not_before: int = 0
    not_after: int | None = None
    callees: list[SimCallee] = field(default_factory=list)


@dataclass
class SimApp:
    tasks: dict[int, SimTask] = field(default_factory=dict)
    #: call records in the order they were written
    cdrs: list[TelCdrInfo] = field(default_factory=list)


def _push_acked(status: int, body: bytes) -> bool:
    """Tencent takes a push as received only from an answer ``{"ErrCode":0}``."""
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return status == 200 and isinstance(answer, dict) and answer.get("ErrCode") == 0


def _error(code: str, message: str, request_id: str | None = None) -> web.Response:
    body = msgspec.json.encode(
        {
            "Response": {
                "Error": {"Code": code, "Message": message},
                "RequestId": request_id or str(uuid.uuid4()),
            }
        }
    )
    # the real service answers errors with HTTP 200 and exactly this content type
    return json_response(body, 200, "application/json")


class TencentCccSimulator(Simulator):
    vendor = "tencent-ccc"
    total_fields = frozenset({"TotalCount"})
    list_fields = frozenset({"Tasks"})

    def __init__(
        self,
        *,
        credentials: dict[str, str],
        seed: int = 0,
        rate_limit: int = 20,
        max_page_size: int = 100,
    ) -> None:
        super().__init__(
            seed=seed, rate_limits={LIST_API: rate_limit, TASK_API: rate_limit, CDR_API: rate_limit}
        )
        self.credentials = dict(credentials)
        self.apps: dict[int, SimApp] = {}
        self.max_page_size = max_page_size
        self._next_id = 1000
        self.app.router.add_post("/", self._handle)
        #: a hostile answer: DescribeTelCdr claims this TotalCount whatever it holds
        self.claimed_cdr_total: int | None = None
        self.pusher = Pusher(self.rng, _push_acked)

    # -- Data Push -----------------------------------------------------------------------------
    def push_to(self, plan: PushPlan | None) -> None:
        self.pusher.plan = plan

    @property
    def pushes(self) -> list[PushRecord]:
        return self.pusher.records

    async def stop(self) -> None:
        await self.pusher.close()
        await super().stop()

    async def pushes_settled(self) -> None:
        """Wait until every push started so far has ended (acked, dropped or given up)."""
        await self.pusher.settled()

    def _push(self, sdk_app_id: int, cdr: TelCdrInfo) -> None:
        """Data Push of one CDR: JSON with the SdkAppId at the root, a push id per record."""
        if self.pusher.plan is None:
            return
        body = msgspec.json.encode(msgspec.structs.replace(cdr, SdkAppId=sdk_app_id))
        push_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        headers = {"Content-Type": "application/json;charset=utf8", "X-TCCC-PUSH-UUID": push_id}
        self.pusher.push(cdr.SessionId, body, push_id, headers)

    # -- the world ---------------------------------------------------------------------------
    def add_app(self, sdk_app_id: int) -> SimApp:
        return self.apps.setdefault(sdk_app_id, SimApp())

    def add_task(self, sdk_app_id: int, name: str | None = None, state: int = 0, callees: int = 10) -> int:
        self._next_id += 1
        task_id = self._next_id
        numbers = [f"138{task_id % 10000:04d}{i:04d}" for i in range(callees)]
        self.add_app(sdk_app_id).tasks[task_id] = SimTask(
            task_id,
            name or f"task-{task_id}",
            state,
            callees,
            int(time.time()),
            callees=[SimCallee(n) for n in numbers],
        )
        return task_id

    def place_call(
        self,
        sdk_app_id: int,
        task_id: int,
        *,
        end_status: tuple[int, str] | None = None,
        talk: int = 20,
        ring: int = 5,
        listed: bool = True,
    ) -> TelCdrInfo:
        """One finished call of the task's next callee: a session on the callee and its CDR.

        ``listed=False`` keeps the record out of DescribeTelCdr (a record the vendor lists late);
        :meth:`list_cdr` lists it.
        """
        task = self.apps[sdk_app_id].tasks[task_id]
        waiting = [c for c in task.callees if c.state in (0, 4)] or task.callees
        callee = waiting[0]
        status, label = end_status or self.rng.choice(END_STATUSES)
        session = str(uuid.UUID(int=self.rng.getrandbits(128)))
        callee.sessions.append(session)
        callee.state = 1 if status == 1 else 2
        ended = int(time.time())
        answered = ended - talk if status == 1 else 0
        rang = (answered or ended) - ring
        cdr = TelCdrInfo(
            SessionId=session,
            EndStatus=status,
            EndStatusString=label,
            Caller="0755" + str(task_id),
            Callee=callee.number,
            Time=rang - 1,
            StartTimestamp=rang - 1,
            Direction=1,
            CallType=1,
            Duration=talk if status == 1 else 0,
            RingTimestamp=rang,
            AcceptTimestamp=answered,
            EndedTimestamp=ended,
            HungUpSide="user",
        )
        if listed:
            self.apps[sdk_app_id].cdrs.append(cdr)
        self._push(sdk_app_id, cdr)
        return cdr

    def list_cdr(self, sdk_app_id: int, cdr: TelCdrInfo) -> None:
        self.apps[sdk_app_id].cdrs.append(cdr)

    def manual_call(self, sdk_app_id: int, *, listed: bool = True) -> TelCdrInfo:
        """A seat's own outbound call: a record, pushed like any other, that no auto-callout task owns."""
        now = int(time.time())
        cdr = TelCdrInfo(
            SessionId=str(uuid.UUID(int=self.rng.getrandbits(128))),
            EndStatus=1,
            EndStatusString="ok",
            Caller="075500000000",
            Callee="13900000000",
            Time=now - 30,
            StartTimestamp=now - 30,
            Direction=1,
            Duration=25,
            AcceptTimestamp=now - 25,
            EndedTimestamp=now,
        )
        if listed:
            self.apps[sdk_app_id].cdrs.append(cdr)
        self._push(sdk_app_id, cdr)
        return cdr

    def set_state(self, sdk_app_id: int, task_id: int, state: int) -> None:
        self.apps[sdk_app_id].tasks[task_id].state = state

    def remove_task(self, sdk_app_id: int, task_id: int) -> None:
        del self.apps[sdk_app_id].tasks[task_id]

    def evolve(self) -> list[tuple[int, int, int, int]]:
        """One random step per running-ish task: returns (app, task, old, new) of each change."""
        changes = []
        for app_id, app in self.apps.items():
            for task in app.tasks.values():
                options = NEXT_STATES.get(task.state, ())
                if options and self.rng.random() < 0.3:
                    new = self.rng.choice(options)
                    if new != task.state:
                        changes.append((app_id, task.task_id, task.state, new))
                        task.state = new
                if task.state == 1 and task.callees and self.rng.random() < 0.5:
                    if any(c.state in (0, 4) for c in task.callees):
                        self.place_call(app_id, task.task_id)
                    else:
                        changes.append((app_id, task.task_id, task.state, 2))
                        task.state = 2  # every callee called: the task is done
        return changes

    # -- protocol ----------------------------------------------------------------------------
    def api_of(self, request: web.Request) -> str:
        return request.headers.get("X-TC-Action", "?")

    def error_answer(self, kind: Fault, api: str) -> web.StreamResponse:
        if kind is Fault.THROTTLE:
            return _error("RequestLimitExceeded", "The number of requests exceeds the frequency limit.")
        if kind is Fault.AUTH:
            return _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        return _error("InternalError", "An internal error has occurred. Retry your request.")

    async def authenticate(self, request: web.Request, body: bytes) -> str | web.StreamResponse:
        match = _AUTH.match(request.headers.get("Authorization", ""))
        if not match:
            return _error("AuthFailure.InvalidAuthorization", "Authorization header is malformed.")
        secret_id = match["id"]
        secret_key = self.credentials.get(secret_id)
        if secret_key is None:
            return _error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        try:
            timestamp = int(request.headers.get("X-TC-Timestamp", ""))
        except ValueError:
            return _error("MissingParameter", "The request is missing a required parameter `X-TC-Timestamp`.")
        if abs(time.time() - timestamp) > MAX_SKEW:
            return _error("AuthFailure.SignatureExpire", "Signature expired. Timestamp is out of range.")
        if match["signed"] != "content-type;host" or match["service"] != SERVICE:
            return _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        to_sign = tc3_string_to_sign(
            host=request.headers.get("Host", ""),
            content_type=request.headers.get("Content-Type", ""),
            payload=body,
            timestamp=timestamp,
            service=SERVICE,
        )
        if not to_sign.split("\n")[2].startswith(match["date"]):
            return _error("AuthFailure.SignatureFailure", "Credential date does not match X-TC-Timestamp.")
        expected = tc3_signature(secret_key, match["date"], SERVICE, to_sign)
        if expected != match["sig"]:
            return _error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        return secret_id

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = self.api_of(request)
        handlers = {LIST_API: self._list, TASK_API: self._task, CDR_API: self._cdrs}
        handler = handlers.get(action)
        if handler is None:
            return _error("InvalidAction", f"The action `{action}` is not supported by this simulator.")
        return await handler(await request.read())

    def _app(self, sdk_app_id: int) -> SimApp | web.Response:
        app = self.apps.get(sdk_app_id)
        if app is None:
            return _error("InvalidParameterValue", f"SdkAppId {sdk_app_id} does not exist.")
        return app

    async def _list(self, body: bytes) -> web.StreamResponse:
        try:
            req = msgspec.json.decode(body, type=DescribeAutoCalloutTasksRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error("InvalidParameter", f"The request body is invalid: {exc}")
        if req.PageSize < 1 or req.PageSize > self.max_page_size or req.PageNumber < 0:
            return _error("InvalidParameterValue", "PageSize or PageNumber is out of range.")
        app = self._app(req.SdkAppId)
        if not isinstance(app, SimApp):
            return app
        self.listing_reads.append(ListingRead(time.monotonic(), LIST_API, (), req.PageNumber))
        ordered = sorted(app.tasks.values(), key=lambda t: t.task_id)
        start = req.PageNumber * req.PageSize
        page = [
            AutoCalloutTaskInfo(
                TaskId=t.task_id,
                State=t.state,
                Name=t.name,
                CalleeCount=t.callee_count,
                Callers=["0755" + str(t.task_id)],
                NotBefore=t.not_before,
                NotAfter=t.not_after,
                IvrId=1,
            )
            for t in ordered[start : start + req.PageSize]
        ]
        body = msgspec.json.encode(
            {"Response": {"TotalCount": len(ordered), "Tasks": page, "RequestId": str(uuid.uuid4())}}
        )
        return json_response(body)

    async def _task(self, body: bytes) -> web.StreamResponse:
        try:
            req = msgspec.json.decode(body, type=DescribeAutoCalloutTaskRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error("InvalidParameter", f"The request body is invalid: {exc}")
        app = self._app(req.SdkAppId)
        if not isinstance(app, SimApp):
            return app
        # a read of one task, logged like a listing filtered by its id (tests tell the reads apart)
        self.listing_reads.append(ListingRead(time.monotonic(), TASK_API, (("TaskId", str(req.TaskId)),), 0))
        task = app.tasks.get(req.TaskId)
        if task is None:
            return _error("InvalidParameterValue", f"TaskId {req.TaskId} does not exist.")
        callees = [
            AutoCalloutTaskCalleeInfo(Callee=c.number, State=c.state, Sessions=c.sessions)
            for c in task.callees
        ]
        answer = {
            "Name": task.name,
            "Description": "",
            "NotBefore": task.not_before,
            "NotAfter": task.not_after,
            "Callers": ["0755" + str(task.task_id)],
            "Callees": callees,
            "IvrId": 1,
            "State": task.state,
            "RequestId": str(uuid.uuid4()),
        }
        return json_response(msgspec.json.encode({"Response": answer}))

    async def _cdrs(self, body: bytes) -> web.StreamResponse:
        try:
            req = msgspec.json.decode(body, type=DescribeTelCdrRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error("InvalidParameter", f"The request body is invalid: {exc}")
        if req.PageSize < 1 or req.PageSize > 100 or req.PageNumber < 0:
            return _error("InvalidParameterValue", "PageSize or PageNumber is out of range.")
        now = int(time.time())
        if req.EndTimeStamp - req.StartTimeStamp >= 90 * 86400 or req.StartTimeStamp < now - 180 * 86400:
            return _error("InvalidParameterValue", "The time range is out of range.")
        app = self._app(req.SdkAppId)
        if not isinstance(app, SimApp):
            return app
        sessions = set(req.SessionIds) if req.SessionIds else None
        # selected by the call's start, ordered by it (then by session id)
        matching = sorted(
            (
                c
                for c in app.cdrs
                if req.StartTimeStamp <= (c.Time or 0) <= req.EndTimeStamp
                and (sessions is None or c.SessionId in sessions)
            ),
            key=lambda c: (c.Time or 0, c.SessionId),
        )
        start = req.PageNumber * req.PageSize
        page = matching[start : start + req.PageSize]
        answer = {
            "TotalCount": len(matching) if self.claimed_cdr_total is None else self.claimed_cdr_total,
            "TelCdrs": page,
            "TelCdrList": page,
            "RequestId": str(uuid.uuid4()),
        }
        return json_response(msgspec.json.encode({"Response": answer}))


def demo_setup(seed: int) -> DemoSetup:

    sim = TencentCccSimulator(credentials={"AKIDdemo": "demo-secret-key"}, seed=seed)
    apps = (1400000001, 1400000002)
    for app in apps:
        for _ in range(3):
            sim.add_task(app)

    def sources(url: str) -> list[dict[str, Any]]:
        return [
            {
                "vendor": "tencent-ccc",
                "account": "demo",
                "secret_id": "AKIDdemo",
                "secret_key": "demo-secret-key",
                "sdk_app_ids": list(apps),
                "endpoint": url,
                "poll_interval": 1.0,
            }
        ]

    def evolve() -> None:
        sim.evolve()
        if sim.rng.random() < 0.1:
            sim.add_task(apps[0])

    user, password = "demo-push", "demo-push-password"

    def start_push(base_url: str) -> None:
        # a third of the pushes lost: those calls arrive by polling instead
        sim.push_to(
            PushPlan(
                f"{base_url}/push/tencent-ccc/demo?action=cdr&version=1",
                username=user,
                password=password,
                drop=0.33,
            )
        )

    receivers = [{"vendor": "tencent-ccc", "account": "demo", "username": user, "password": password}]
    return DemoSetup(sim, sources, evolve, receivers, start_push)
