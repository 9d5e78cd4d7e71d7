"""Huawei Cloud AICC simulator: AppCube OAuth2 tokens with expiry and the task detail API.

Protocol choices where the public doc is silent (the adapter follows them, and they are ours):

- ``POST <token_path>`` (default ``/baas/auth/v1.0/oauth2/token``), form body
  ``grant_type=client_credentials&client_id&client_secret`` → ``{"access_token","expires_in",
  "token_type":"Bearer"}``; a wrong client → 401 ``{"error":"invalid_client",...}`` (RFC 6749 5.2).
- ``GET`` or ``POST /service/AICC__Case/1.0.0/openapi/task/{id}`` with ``access-token``: the
  doc's envelope ``{"resCode":"0","resMsg":"成功","result":{taskInfo,taskTrace,caseInfos}}``, or
  (``bare=True``) the bare ``{taskInfo,taskTrace,caseInfos}`` the doc's table describes.
- Error envelopes ``{"resCode": code, "resMsg": ..., "result": null}``: missing/unknown token
  401 ``CM-401001``; expired token 401 ``CM-401002``; unknown task 404 ``CM-404001``; id longer
  than 20 bytes 400 ``CM-400001``; internal error 500 ``CM-500001``. Throttling comes from the API
  gateway in front: 429 ``{"error_code":"APIG.0308","error_msg":...}``.
- Task status evolves Pending → Processing ⇄ Suspended → Completed | Closed | Cancelled; a
  terminal status sets ``closedDate`` and every change appends a ``StatusUpdate`` trace.
"""

from __future__ import annotations

import secrets
import string
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from aiohttp import web

from poller.simulators.base import DemoSetup, Fault, Simulator, json_response
from poller.vendors.huawei_aicc import DETAIL_API, DETAIL_PATH, NOT_FOUND_CODE, TOKEN_API, TOKEN_PATH
from schemas.vendors.huawei import (
    CaseInfo,
    CaseTrace,
    GatewayError,
    OAuthError,
    TaskDetail,
    TaskDetailEnvelope,
    TaskInfo,
    TokenIssued,
)

CONTENT_TYPE = "application/json;charset=UTF-8"
INVALID_TOKEN = "CM-401001"
EXPIRED_TOKEN = "CM-401002"
BAD_PARAMETER = "CM-400001"
INTERNAL_ERROR = "CM-500001"
THROTTLED = "APIG.0308"
TERMINAL = ("Completed", "Closed", "Cancelled")
NEXT_STATUS: dict[str, tuple[str, ...]] = {
    "Pending": ("Processing",),
    "Processing": ("Processing", "Processing", "Suspended", "Completed", "Closed", "Cancelled"),
    "Suspended": ("Processing",),
}
_ID_CHARS = string.ascii_letters + string.digits
_encode = msgspec.json.Encoder().encode


@dataclass
class SimTask:
    task_id: str
    title: str
    status: str = "Pending"
    created: str = ""
    closed: str | None = None
    trace: list[CaseTrace] = field(default_factory=list)


@dataclass
class IssuedToken:
    client_id: str
    expires_at: float


def _now_text() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _envelope_error(status: int, code: str, message: str) -> web.Response:
    body = _encode(TaskDetailEnvelope(resCode=code, resMsg=message, result=None))
    return json_response(body, status, CONTENT_TYPE)


class HuaweiAiccSimulator(Simulator):
    vendor = "huawei-aicc"

    def __init__(
        self,
        *,
        clients: dict[str, str],
        seed: int = 0,
        rate_limit: int = 50,
        token_rate_limit: int | None = None,
        token_lifetime: int = 1800,
        token_path: str = TOKEN_PATH,
        bare: bool = False,
    ) -> None:
        limits = {DETAIL_API: rate_limit}
        if token_rate_limit is not None:
            limits[TOKEN_API] = token_rate_limit
        super().__init__(seed=seed, rate_limits=limits)
        self.clients = dict(clients)
        self.token_lifetime = token_lifetime
        self.token_path = token_path
        self.bare = bare
        self.tasks: dict[str, SimTask] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.tokens_issued = 0
        self.expired_answers = 0
        #: detail requests that got past authentication, per task id
        self.requests_by_task: Counter[str] = Counter()
        #: ids whose detail answers an internal error (a per-task fault)
        self.failing_tasks: set[str] = set()
        self._detail_prefix = DETAIL_PATH.split("{id}")[0]
        self.app.router.add_post(token_path, self._token)
        self.app.router.add_route("GET", DETAIL_PATH, self._detail)
        self.app.router.add_route("POST", DETAIL_PATH, self._detail)

    async def __aenter__(self) -> HuaweiAiccSimulator:
        await self.start()
        return self

    # -- the world ---------------------------------------------------------------------------
    def new_id(self) -> str:
        return "ccqG" + "".join(self.rng.choice(_ID_CHARS) for _ in range(16))

    def add_task(self, title: str | None = None, status: str = "Pending", task_id: str | None = None) -> str:
        task_id = task_id or self.new_id()
        created = _now_text()
        self.tasks[task_id] = SimTask(
            task_id=task_id,
            title=title or f"task-{len(self.tasks) + 1}",
            status=status,
            created=created,
            closed=created if status in TERMINAL else None,
            trace=[CaseTrace(creatorId="10gg00000148QvgpaLAm", type="CreateTask")],
        )
        return task_id

    def set_status(self, task_id: str, status: str) -> None:
        task = self.tasks[task_id]
        task.status = status
        task.closed = _now_text() if status in TERMINAL else None
        task.trace.append(CaseTrace(creatorId="10gg00000148QvgpaLAm", type="StatusUpdate", title=status))

    def remove_task(self, task_id: str) -> None:
        del self.tasks[task_id]

    def evolve(self) -> list[tuple[str, str, str]]:
        """One random step per open task: returns (task, old, new) of each change."""
        changes = []
        for task in self.tasks.values():
            options = NEXT_STATUS.get(task.status, ())
            if options and self.rng.random() < 0.3:
                new = self.rng.choice(options)
                if new != task.status:
                    changes.append((task.task_id, task.status, new))
                    self.set_status(task.task_id, new)
        return changes

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (server-side revocation or a clock jump)."""
        for token in self.tokens.values():
            token.expires_at = 0.0

    # -- protocol ----------------------------------------------------------------------------
    def api_of(self, request: web.Request) -> str:
        if request.path == self.token_path:
            return TOKEN_API
        if request.path.startswith(self._detail_prefix):
            return DETAIL_API
        return "?"

    def error_answer(self, kind: Fault, api: str) -> web.StreamResponse:
        if kind is Fault.THROTTLE:
            body = _encode(
                GatewayError(error_code=THROTTLED, error_msg="The request is throttled.", request_id="sim")
            )
            return json_response(body, 429, CONTENT_TYPE)
        if kind is Fault.AUTH:
            if api == TOKEN_API:
                error = OAuthError(error="invalid_client", error_description="client authentication failed")
                return json_response(_encode(error), 401, CONTENT_TYPE)
            return _envelope_error(401, INVALID_TOKEN, "access token is invalid")
        return _envelope_error(500, INTERNAL_ERROR, "internal server error")

    async def authenticate(self, request: web.Request, body: bytes) -> str | web.StreamResponse:
        api = self.api_of(request)
        if api == TOKEN_API:
            # the client is checked by the token handler itself; its id is the limit key
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            return form.get("client_id", [""])[0]
        if api != DETAIL_API:
            return ""
        token = self.tokens.get(request.headers.get("access-token", ""))
        if token is None:
            return _envelope_error(401, INVALID_TOKEN, "access token is invalid")
        if time.monotonic() >= token.expires_at:
            self.expired_answers += 1
            return _envelope_error(401, EXPIRED_TOKEN, "access token has expired")
        return token.client_id

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = urllib.parse.parse_qs((await request.read()).decode("utf-8", "replace"))

        def one(name: str) -> str:
            return form.get(name, [""])[0]

        if one("grant_type") != "client_credentials":
            error = OAuthError(error="unsupported_grant_type", error_description="use client_credentials")
            return json_response(_encode(error), 400, CONTENT_TYPE)
        expected = self.clients.get(one("client_id"))
        if expected is None or not secrets.compare_digest(expected, one("client_secret")):
            error = OAuthError(error="invalid_client", error_description="client authentication failed")
            return json_response(_encode(error), 401, CONTENT_TYPE)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = IssuedToken(one("client_id"), time.monotonic() + self.token_lifetime)
        self.tokens_issued += 1
        return json_response(
            _encode(TokenIssued(access_token=token, expires_in=self.token_lifetime)), 200, CONTENT_TYPE
        )

    async def _detail(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["id"]
        if len(task_id.encode()) > 20:
            return _envelope_error(400, BAD_PARAMETER, "id: length must not exceed 20")
        self.requests_by_task[task_id] += 1
        if task_id in self.failing_tasks:
            return _envelope_error(500, INTERNAL_ERROR, "internal server error")
        task = self.tasks.get(task_id)
        if task is None:
            return _envelope_error(404, NOT_FOUND_CODE, "task does not exist")
        detail = TaskDetail(
            taskInfo=TaskInfo(
                id=task.task_id,
                title=task.title,
                status=task.status,
                description=None,
                type="Case",
                ownerId="10gg00000148QvgpaLAm",
                creatorId="10gg00000148QvgpaLAm",
                creatorName="10gg00000148QvgpaLAm",
                createdDate=task.created,
                closedDate=task.closed,
                priority="Low",
                taskNo=f"{abs(hash(task.task_id)) % 10**30:030d}",
                attachment="",
            ),
            taskTrace=list(task.trace),
            caseInfos=[CaseInfo(id="c6m80000014iXKHqDw3c", caseNo="0" * 29 + "6", state="Processing")],
        )
        payload: Any = detail if self.bare else TaskDetailEnvelope(resCode="0", resMsg="成功", result=detail)
        return json_response(_encode(payload), 200, CONTENT_TYPE)


def demo_setup(seed: int) -> DemoSetup:

    sim = HuaweiAiccSimulator(clients={"demo-client": "demo-client-secret"}, seed=seed)
    ids = [sim.add_task(f"回访任务 {n}") for n in range(1, 5)]

    def sources(url: str) -> list[dict[str, Any]]:
        return [
            {
                "vendor": "huawei-aicc",
                "account": "demo",
                "client_id": "demo-client",
                "client_secret": "demo-client-secret",
                # the fourth task is there to be added on the control subject
                "task_ids": ids[:3],
                "endpoint": url,
                "poll_interval": 1.0,
            }
        ]

    def evolve() -> None:
        sim.evolve()

    return DemoSetup(sim, sources, evolve)
