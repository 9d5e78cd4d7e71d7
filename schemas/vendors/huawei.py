"""Huawei Cloud AICC (besclouds) wire models: task detail, token, and the watch-list control messages.

Vendor answers are decoded tolerantly: every field is optional (the documented example is mostly
``null``) and unknown fields are ignored. ``customerInfo`` is deliberately not modelled: it is
personal data the poller never needs, so it is skipped unread.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: a task id as the detail API takes it (doc: a string of up to 20 bytes); the character set also
#: keeps it safe inside a URL path and a committed-state cursor key
TaskId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,20}$")]


# -- task detail --------------------------------------------------------------------------------
class TaskInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Table 4 of the doc. Dates are ``YYYY-MM-DD HH:mm:ss`` strings in the tenant's time zone."""

    id: str | None = None
    title: str | None = None
    status: str | None = None
    description: str | None = None
    type: str | None = None
    relateId: str | None = None
    ownerId: str | None = None
    ownerName: str | None = None
    contactId: str | None = None
    priority: str | None = None
    dueDate: str | None = None
    creatorId: str | None = None
    creatorName: str | None = None
    createdDate: str | None = None
    closedDate: str | None = None
    stayDate: str | None = None
    taskNo: str | None = None
    attachment: str | None = None


class CaseTrace(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Table 5: one step of the task's history (``CreateTask``, ``StatusUpdate``)."""

    creatorId: str | None = None
    creatorName: str | None = None
    type: str | None = None
    relatedId: str | None = None
    title: str | None = None
    description: str | None = None


class CaseInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The related case (work order). ``contactPhone`` is personal data and left unread."""

    id: str | None = None
    caseNo: str | None = None
    status: str | None = None
    state: str | None = None
    title: str | None = None
    priority: str | None = None
    parentId: str | None = None
    ownerId: str | None = None
    origin: str | None = None
    isUpgraded: bool | None = None
    extternalNo: str | None = None
    dueDate: str | None = None
    description: str | None = None
    creatorId: str | None = None
    createdDate: str | None = None
    contactId: str | None = None
    reason: str | None = None
    stayDate: str | None = None
    suspendAccumulatedTime: int | str | None = None
    suspendDate: str | None = None
    type: str | None = None
    closedDate: str | None = None
    attachment: str | None = None


class TaskDetail(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The bare answer the doc's table describes: ``{taskInfo, taskTrace, caseInfos, customerInfo}``.

    The table says ``caseInfos`` is one Case; the doc's example sends a list: both decode.
    """

    taskInfo: TaskInfo | None = None
    taskTrace: list[CaseTrace] | None = None
    caseInfos: list[CaseInfo] | CaseInfo | None = None


class TaskDetailEnvelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The enveloped answer of the doc's example: ``{"resCode":"0","resMsg":"成功","result":{...}}``."""

    resCode: str | int | None = None
    resMsg: str | None = None
    result: TaskDetail | None = None


class TaskDetailAnswer(TaskDetail, frozen=True, kw_only=True):
    """What the adapter decodes: either shape, or an error body (AppCube envelope or API gateway).

    ``resCode`` present → the enveloped shape; else ``taskInfo`` at the top → the bare shape.
    """

    resCode: str | int | None = None
    resMsg: str | None = None
    result: TaskDetail | None = None
    #: API gateway (APIG) error bodies, e.g. throttling
    error_code: str | None = None
    error_msg: str | None = None

    @property
    def code(self) -> str | None:
        """The vendor's error or success code, whichever body shape carried it."""
        if self.resCode is not None:
            return str(self.resCode)
        return self.error_code

    @property
    def message(self) -> str:
        return (self.resMsg or self.error_msg or "")[:200]

    @property
    def detail(self) -> TaskDetail | None:
        """The task detail of a success answer of either shape, or None."""
        if self.result is not None:
            return self.result
        if self.resCode is None and self.taskInfo is not None:
            return TaskDetail(taskInfo=self.taskInfo, taskTrace=self.taskTrace, caseInfos=self.caseInfos)
        return None


class DetailRequestBody(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The body of the POST variant (the international doc), as in the doc's example."""

    id: str


# -- token (AppCube OAuth2 client credentials; unconfirmed for AICC) --------------------------------
class TokenAnswer(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``{"access_token","expires_in","token_type"}``, or an OAuth2 / AppCube error body."""

    access_token: str | None = None
    expires_in: int | str | None = None
    token_type: str | None = None
    error: str | None = None
    error_description: str | None = None
    resCode: str | int | None = None
    resMsg: str | None = None

    @property
    def message(self) -> str:
        parts = [str(p) for p in (self.error, self.error_description, self.resCode, self.resMsg) if p]
        return ": ".join(parts)[:200]


class TokenIssued(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the simulator answers on success."""

    access_token: str
    expires_in: int
    token_type: str = "Bearer"


class OAuthError(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    error: str
    error_description: str = ""


class GatewayError(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Huawei API gateway's own error body (throttling answers come from it, not from AICC)."""

    error_code: str
    error_msg: str
    request_id: str = ""


# -- run-time watch-list control (NATS request/reply; see poller/control.py) ------------------------
class WatchRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False, forbid_unknown_fields=True):
    """Body of a request on ``<subject_prefix>-control.<vendor>.<account>.watch``.

    Both lists empty (``{}``) only asks for the current list. Adding a watched id or removing an
    unwatched one is a no-op, so a request can safely be repeated.
    """

    add: Annotated[list[TaskId], msgspec.Meta(max_length=1000)] = []
    remove: Annotated[list[TaskId], msgspec.Meta(max_length=1000)] = []


class WatchReply(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``ok`` with the resulting list, or ``ok=false`` with ``error`` (and nothing changed)."""

    ok: bool
    vendor: str = ""
    account: str = ""
    #: every id this account now polls, sorted
    watched: list[str] = []
    #: ids this request started / stopped polling (no-ops are not listed)
    added: list[str] = []
    removed: list[str] = []
    error: str | None = None
