"""Tencent Cloud CCC 2020-02-10 ``DescribeAutoCalloutTasks`` wire models (API 3.0 envelope)."""

from __future__ import annotations

import msgspec


class AutoCalloutTaskInfo(msgspec.Struct, frozen=True, kw_only=True, rename=None, gc=False):
    TaskId: int
    State: int
    Name: str = ""
    CalleeCount: int = 0
    Callers: list[str] = []
    NotBefore: int | None = None
    NotAfter: int | None = None
    IvrId: int | None = None


class ApiError(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Code: str
    Message: str = ""


class DescribeAutoCalloutTasksResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The inner ``Response`` object: either the result or an ``Error``."""

    RequestId: str = ""
    TotalCount: int | None = None
    Tasks: list[AutoCalloutTaskInfo] | None = None
    Error: ApiError | None = None


class DescribeAutoCalloutTasksResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Response: DescribeAutoCalloutTasksResult


class DescribeAutoCalloutTasksRawResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The same answer with each task left as its raw JSON: an unchanged task is not decoded again."""

    RequestId: str = ""
    TotalCount: int | None = None
    Tasks: list[msgspec.Raw] | None = None
    Error: ApiError | None = None


class DescribeAutoCalloutTasksRawResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Response: DescribeAutoCalloutTasksRawResult


class DescribeAutoCalloutTasksRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    SdkAppId: int
    PageSize: int
    PageNumber: int


# -- DescribeAutoCalloutTask: one task's callees and their call sessions ---------------------------
class AutoCalloutTaskCalleeInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One callee of a task; ``State`` 0 initial, 1 answered, 2 not answered, 3 calling, 4 to retry."""

    Callee: str = ""
    State: int | None = None
    Sessions: list[str] | None = None


class DescribeAutoCalloutTaskRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    SdkAppId: int
    TaskId: int


class DescribeAutoCalloutTaskResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    RequestId: str = ""
    Name: str | None = None
    Description: str | None = None
    NotBefore: int | None = None
    NotAfter: int | None = None
    Callers: list[str] | None = None
    Callees: list[AutoCalloutTaskCalleeInfo] | None = None
    IvrId: int | None = None
    State: int | None = None
    Error: ApiError | None = None


class DescribeAutoCalloutTaskResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Response: DescribeAutoCalloutTaskResult


# -- DescribeTelCdr: call records of an SdkAppId in a time window -------------------------------------
class TelCdrInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One call record (CDR). Timestamps are Unix seconds; ``Duration`` is in seconds.

    The same shape arrives by Data Push (``?action=cdr``), so both paths build the same event.
    """

    SessionId: str
    EndStatus: int
    EndStatusString: str | None = None
    Caller: str | None = None
    Callee: str | None = None
    ProtectedCaller: str | None = None
    ProtectedCallee: str | None = None
    Time: int | None = None
    Direction: int | None = None
    CallType: int | None = None
    Duration: int | None = None
    StartTimestamp: int | None = None
    RingTimestamp: int | None = None
    AcceptTimestamp: int | None = None
    EndedTimestamp: int | None = None
    HungUpSide: str | None = None
    #: the push carries the app; DescribeTelCdr answers do not need it
    SdkAppId: int | None = None


class DescribeTelCdrRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    SdkAppId: int
    StartTimeStamp: int
    EndTimeStamp: int
    PageSize: int
    PageNumber: int
    SessionIds: list[str] | None = None
    Phones: list[str] | None = None


class DescribeTelCdrResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``TelCdrList`` is the current field; older answers carry ``TelCdrs``."""

    RequestId: str = ""
    TotalCount: int | None = None
    TelCdrList: list[TelCdrInfo] | None = None
    TelCdrs: list[TelCdrInfo] | None = None
    Error: ApiError | None = None


class DescribeTelCdrResponse(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    Response: DescribeTelCdrResult
