"""Tencent Cloud CCC simulator: API 3.0 envelope, TC3 verification, 0-based pages, 20 req/s."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from poller.simulators.base import DemoSetup, Fault, Simulator, json_response
from poller.vendors.tencent_ccc import LIST_API, SERVICE, tc3_signature, tc3_string_to_sign
from schemas.vendors.tencent_ccc import AutoCalloutTaskInfo, DescribeAutoCalloutTasksRequest

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)/tc3_request,"
    r"\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
MAX_SKEW = 300
#: the evolution a real task follows; 5 (paused) can come back to 1
NEXT_STATES = {0: (1,), 1: (1, 1, 2, 5, 3), 5: (1,), 3: (4,), 2: (), 4: ()}


@dataclass
class SimTask:
    task_id: int
    name: str
    state: int = 0
    callee_count: int = 1
    not_before: int = 0
    not_after: int | None = None


@dataclass
class SimApp:
    tasks: dict[int, SimTask] = field(default_factory=dict)


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
        super().__init__(seed=seed, rate_limits={LIST_API: rate_limit})
        self.credentials = dict(credentials)
        self.apps: dict[int, SimApp] = {}
        self.max_page_size = max_page_size
        self._next_id = 1000
        self.app.router.add_post("/", self._handle)

    # -- the world ---------------------------------------------------------------------------
    def add_app(self, sdk_app_id: int) -> SimApp:
        return self.apps.setdefault(sdk_app_id, SimApp())

    def add_task(self, sdk_app_id: int, name: str | None = None, state: int = 0, callees: int = 10) -> int:
        self._next_id += 1
        task_id = self._next_id
        self.add_app(sdk_app_id).tasks[task_id] = SimTask(
            task_id, name or f"task-{task_id}", state, callees, int(time.time())
        )
        return task_id

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
        if action != LIST_API:
            return _error("InvalidAction", f"The action `{action}` is not supported by this simulator.")
        try:
            req = msgspec.json.decode(await request.read(), type=DescribeAutoCalloutTasksRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _error("InvalidParameter", f"The request body is invalid: {exc}")
        if req.PageSize < 1 or req.PageSize > self.max_page_size or req.PageNumber < 0:
            return _error("InvalidParameterValue", "PageSize or PageNumber is out of range.")
        app = self.apps.get(req.SdkAppId)
        if app is None:
            return _error("InvalidParameterValue", f"SdkAppId {req.SdkAppId} does not exist.")
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

    return DemoSetup(sim, sources, evolve)
