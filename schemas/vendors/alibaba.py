"""Alibaba Cloud wire models: OutboundBot 2019-12-26 ``ListJobsByGroup``, AICCS 2019-10-15 ``ListTask``.

Both APIs are RPC style: every parameter goes in the query string of ``POST /`` and the answer is
JSON. The documentation's own examples send numbers and booleans as strings (``"TotalCount": "1"``,
``"Success": "true"``) and ``CallingNumbers`` as a JSON-encoded string, so these models are decoded
with ``strict=False`` and :func:`dec_hook` (see :func:`decoder`); the models themselves say what the
values mean, not how the vendor happens to spell them.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class NumberList:
    """A list of phone numbers the vendor sends as a JSON array or as a JSON-encoded string of one.

    Decoded only through :func:`dec_hook`; encoded (by the simulator) through :func:`enc_hook`.
    """

    __slots__ = ("numbers",)

    def __init__(self, numbers: tuple[str, ...] | list[str] = ()) -> None:
        self.numbers: tuple[str, ...] = tuple(numbers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NumberList) and other.numbers == self.numbers

    def __hash__(self) -> int:
        return hash(self.numbers)

    def __repr__(self) -> str:
        # phone numbers are personal data: never in reprs
        return f"NumberList(<{len(self.numbers)} numbers>)"


def _number_list(value: Any) -> NumberList:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return NumberList()
        if not text.startswith("["):
            # a bare number (or a comma-separated few) instead of a JSON array
            return NumberList([part.strip() for part in text.split(",") if part.strip()])
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ValueError("CallingNumbers is a string but not a JSON array") from exc
    if isinstance(value, list) and all(isinstance(item, str | int) for item in value):
        return NumberList([str(item) for item in value])
    raise ValueError("CallingNumbers must be a list of strings or a JSON-encoded one")


def dec_hook(type_: type, value: Any) -> Any:
    if type_ is NumberList:
        return _number_list(value)
    raise NotImplementedError(f"no decoder for {type_!r}")


def enc_hook(value: Any) -> Any:
    if isinstance(value, NumberList):
        return list(value.numbers)
    raise NotImplementedError(f"no encoder for {type(value)!r}")


def decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    """The decoder every Alibaba answer goes through: numbers/bools as strings, CallingNumbers hook."""
    return msgspec.json.Decoder(type_, strict=False, dec_hook=dec_hook)


# -- common ------------------------------------------------------------------------------------------
class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What every Alibaba Cloud API answers on a 4xx/5xx (RequestId, HostId, Code, Message, Recommend)."""

    Code: str = ""
    Message: str = ""
    RequestId: str = ""
    HostId: str = ""
    Recommend: str = ""


# -- OutboundBot ListJobsByGroup -----------------------------------------------------------------------
class Contact(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    ContactId: str | None = None
    ContactName: str | None = None
    Honorific: str | None = None
    JobId: str | None = None
    PhoneNumber: str | None = None
    ReferenceId: str | None = None
    Role: str | None = None
    #: Available / WrongNumber / DoesNotExist / Suspended
    State: str | None = None


class KeyValuePair(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Key: str | None = None
    Value: str | None = None


class JobSummary(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Category: str | None = None
    Content: str | None = None
    ConversationDetailId: str | None = None
    JobGroupId: str | None = None
    JobId: str | None = None
    SummaryId: str | None = None
    SummaryName: str | None = None
    TaskId: str | None = None


class Job(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One job: a single callee (``Contacts[0]``) that the job group dials."""

    JobId: str
    #: Scheduling / Executing / Succeeded / Paused / Failed / Cancelled / Drafted
    Status: str
    JobGroupId: str | None = None
    FailureReason: str | None = None
    CallingNumbers: NumberList | None = None
    Contacts: list[Contact] = []
    Extras: list[KeyValuePair] = []
    Summary: list[JobSummary] = []
    Priority: int | None = None
    SystemPriority: int | None = None
    ReferenceId: str | None = None
    ScenarioId: str | None = None
    StrategyId: str | None = None


class JobPage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    PageNumber: int
    PageSize: int
    TotalCount: int
    List: list[Job] = []


class ListJobsByGroupResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    RequestId: str = ""
    Code: str | None = None
    Message: str | None = None
    HttpStatusCode: int | None = None
    Success: bool | None = None
    Jobs: JobPage | None = None


class ListJobsByGroupRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The API parameters (query string); signing adds the common ones."""

    InstanceId: str
    JobGroupId: str
    PageNumber: int
    PageSize: int
    JobStatus: str | None = None
    JobFailureReason: str | None = None


class ListJobsResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``ListJobs``: the jobs asked for by id (``JobId.N``), unpaged; unknown ids are left out."""

    RequestId: str = ""
    Code: str | None = None
    Message: str | None = None
    HttpStatusCode: int | None = None
    Success: bool | None = None
    Jobs: list[Job] | None = None


# -- AICCS ListTask -------------------------------------------------------------------------------------
class TaskRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Id: int
    #: INIT / RELEASE / READY / RUNNING / STOP / SYSTEM_STOP / CANCEL / SYSTEM_CANCEL / DONE
    Status: str
    TaskName: str | None = None
    RobotId: int | None = None
    RobotName: str | None = None
    #: epoch milliseconds; the vendor sends them as strings ("1618477232000")
    GmtCreate: int | None = None
    FireTime: int | None = None
    TotalCount: int | None = None
    CompleteCount: int | None = None


class TaskPage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    PageNo: int
    PageSize: int
    Total: int
    Record: list[TaskRecord] = []


class ListTaskResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    RequestId: str = ""
    Code: str | None = None
    Message: str | None = None
    Success: bool | None = None
    Data: TaskPage | None = None


class TaskRawPage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The same page with each record left as its raw JSON: an unchanged record is not decoded again."""

    PageNo: int
    PageSize: int
    Total: int
    Record: list[msgspec.Raw] = []


class ListTaskRawResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    RequestId: str = ""
    Code: str | None = None
    Message: str | None = None
    Success: bool | None = None
    Data: TaskRawPage | None = None


class ListTaskRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    PageNo: int
    PageSize: int
    TaskName: str | None = None
    Status: str | None = None
    TaskId: int | None = None
    RobotName: str | None = None


# -- AICCS ListTaskDetail: the callees of one robot call task ---------------------------------------------
class TaskDetailRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One callee of a task and its latest attempt. Times are "YYYY-MM-DD HH:mm:ss" in the vendor's
    local time; ``Duration`` is in seconds."""

    Id: int
    #: SUCCESS / FAIL / INIT (not called yet)
    Status: str
    #: the Voice Messaging call status code (200000 heard, 200002 busy, ...)
    StatusCode: str | None = None
    StatusCodeDesc: str | None = None
    Called: str | None = None
    Caller: str | None = None
    #: who hung up: User / Robot
    Direction: str | None = None
    Duration: int | None = None
    StartTime: str | None = None
    EndTime: str | None = None
    RetryCurTimes: int | None = None
    RetryTimes: int | None = None
    Tags: str | None = None


class TaskDetailPage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    PageNo: int
    PageSize: int
    Total: int
    Record: list[TaskDetailRecord] = []


class ListTaskDetailResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    RequestId: str = ""
    Code: str | None = None
    Message: str | None = None
    Success: bool | None = None
    Data: TaskDetailPage | None = None


class ListTaskDetailRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    TaskId: int
    PageNo: int
    PageSize: int
    Status: str | None = None
    StatusCode: str | None = None
    Called: str | None = None
    Id: int | None = None
