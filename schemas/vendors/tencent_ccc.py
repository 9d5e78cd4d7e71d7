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
