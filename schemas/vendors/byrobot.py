"""BYRobot (百应) OpenAPI v1 wire models: getTasks, getTaskDetail, queryDoneTaskPhones, phoneLogInfo.

Every answer is wrapped in ``{"code": 200, "data": …, "resultMsg": …, "errorStackTrace": …}``.
The models accept exactly the value shapes the vendor's docs show, and no more:

* ``duration`` is ``"27秒"`` in the queryDoneTaskPhones example and ``87`` in phoneLogInfo;
* ``aiUnknown`` is ``false`` in the example and an integer (1/0) in the field table;
* ``status``/``finishStatus`` are integers in the examples and typed String in the tables;
* the task counts are ``null`` in the getTasks example;
* ids the tables type as String (``robotDefId``, ``sceneDefId``) are integers in the examples;
* ``startDate`` is typed "object" (a date string in the example, an epoch-millisecond number or
  string elsewhere), so every time field takes a string or an integer.

Unknown fields are ignored. Interpreting the values (``"27秒"`` → 27) is the adapter's job.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")

#: an enum code sent as a number or as a string of one
Code = int | str
#: a time: ``"yyyy-MM-dd HH:mm:ss"`` (China time), or epoch milliseconds as a number or string
Time = str | int
#: an id the tables type as String while the examples send numbers
LooseId = int | str


class Envelope(msgspec.Struct, Generic[T], frozen=True, kw_only=True, gc=False):
    code: Code
    data: T | None = None
    resultMsg: str | None = None
    errorStackTrace: str | None = None


class RawEnvelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The envelope with ``data`` left undecoded: enough to classify an answer before trusting it."""

    code: Code
    #: ``null`` when absent
    data: msgspec.Raw = msgspec.Raw(b"null")
    resultMsg: str | None = None


class NameValue(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``durationStat``/``chatRoundStat``/``extraStat`` items (counts) and ``resultList`` items (text)."""

    name: str | None = None
    value: int | str | None = None


class CallPhone(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A caller line of a task (``callPhones``), shaped like getPhones' items."""

    jobPhoneId: int | None = None
    userPhoneId: int | None = None
    callJobId: int | None = None
    phone: str | None = None
    phoneName: str | None = None
    gmtCreate: Time | None = None
    gmtModified: Time | None = None


class TaskInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One task as getTasks lists it.

    ``status``: 0 未开始, 1 进行中, 2 已完成, 4 用户暂停, 5 系统暂停, 6 已终止.
    """

    callJobId: int
    jobName: str | None = None
    jobType: int | None = None
    startDate: Time | None = None
    workingStartTime: str | None = None
    workingEndTime: str | None = None
    breakStartTime: str | None = None
    breakEndTime: str | None = None
    status: Code | None = None
    sceneDefId: LooseId | None = None
    remark: str | None = None
    totalCount: int | None = None
    doneCount: int | None = None
    calledCount: int | None = None
    rejectedCount: int | None = None
    unavailableCount: int | None = None
    fromUnavailableCount: int | None = None
    sceneDefName: str | None = None
    callPhones: list[CallPhone] | None = None


class ResultDef(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str | None = None
    values: list[str] | None = None


class TaskDetail(TaskInfo, frozen=True, kw_only=True):
    """getTaskDetail: the listing's fields plus the robot, scene and statistics."""

    robotDefName: str | None = None
    sceneRecordName: str | None = None
    durationStat: list[NameValue] | None = None
    chatRoundStat: list[NameValue] | None = None
    resultDefs: list[ResultDef] | None = None
    extraStat: dict[str, list[NameValue]] | None = None


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True, gc=False):
    """The PageHelper page both listings answer with; pages count from 1."""

    pageNum: int | None = None
    pageSize: int | None = None
    size: int | None = None
    orderBy: str | None = None
    startRow: int | None = None
    endRow: int | None = None
    total: int | None = None
    pages: int | None = None
    items: list[T] | None = msgspec.field(default=None, name="list")


class ResultQuery(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    name: str
    value: str


class DoneCallsQuery(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """queryDoneTaskPhones' JSON body. ``index``: the highest ``callIndex`` already fetched (-1 first)."""

    callJobId: int
    durationLeft: int | None = None
    durationRight: int | None = None
    chatRoundLeft: int | None = None
    chatRoundRight: int | None = None
    finishStatus: Code | None = None
    index: int | None = None
    pageNum: int | None = None
    pageSize: int | None = None
    resultQueryList: list[ResultQuery] | None = None


class DoneCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One finished call instance (one callee of a task). ``callIndex`` is its finishing order."""

    callInstanceId: LooseId
    sceneDefId: LooseId | None = None
    callJobId: int | None = None
    customerTelephone: str | None = None
    customerName: str | None = None
    status: Code | None = None
    finishStatus: Code | None = None
    duration: int | str | None = None
    chatRound: int | None = None
    startTime: Time | None = None
    endTime: Time | None = None
    callerPhone: str | None = None
    callIndex: int | None = None
    luyinOssUrl: str | None = None
    secondaryCallTime: Time | None = None
    secondaryCallTimes: int | None = None
    gmtCreate: Time | None = None
    gmtModified: Time | None = None
    jobName: str | None = None
    resultList: list[NameValue] | None = None


class PhoneLogLine(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One utterance. ``startTime``/``endTime`` are millisecond offsets into the call."""

    sceneInstanceLogId: int | None = None
    sceneInstanceId: LooseId | None = None
    speaker: str | None = None
    content: str | None = None
    userMean: str | None = None
    userMeanDetail: str | None = None
    aiUnknown: bool | int | None = None
    startTime: Time | None = None
    endTime: Time | None = None
    gmtCreate: Time | None = None
    gmtModified: Time | None = None


class PhoneLog(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    phoneLogs: list[PhoneLogLine] | None = None
    luyinOssUrl: str | None = None


class SceneInstance(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The call instance as phoneLogInfo shows it. ``hangUp``: 0 the AI hung up, 1 the callee."""

    callInstanceId: LooseId | None = None
    companyId: int | None = None
    callJobId: int | None = None
    customerId: int | None = None
    customerTelephone: str | None = None
    customerName: str | None = None
    status: Code | None = None
    finishStatus: Code | None = None
    duration: int | str | None = None
    chatRound: int | None = None
    startTime: Time | None = None
    endTime: Time | None = None
    callerPhone: str | None = None
    luyinOssUrl: str | None = None
    userLuyinOssUrl: str | None = None
    properties: str | None = None
    handlePerson: str | None = None
    callType: int | None = None
    readStatus: int | None = None
    jobName: str | None = None
    robotDefId: LooseId | None = None
    sceneDefId: LooseId | None = None
    sceneRecordId: LooseId | None = None
    trackResult: str | None = None
    hangUp: Code | None = None
    secondaryCallTime: Time | None = None
    secondaryCallTimes: int | None = None
    gmtCreate: Time | None = None
    gmtModified: Time | None = None


class TaskResultItem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One analysis result of a call (``resultName`` → ``resultValue``)."""

    sceneInstanceResultId: int | None = None
    companyId: int | None = None
    sceneInstanceId: LooseId | None = None
    resultName: str | None = None
    resultValue: str | None = None
    resultDesc: str | None = None
    analyzeType: str | None = None
    gmtCreate: Time | None = None
    gmtModified: Time | None = None


class PhoneLogInfo(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    phoneLog: PhoneLog | None = None
    sceneInstance: SceneInstance | None = None
    taskResult: list[TaskResultItem] | None = None


TasksAnswer = Envelope[Page[TaskInfo]]
TaskDetailAnswer = Envelope[TaskDetail]
DoneCallsAnswer = Envelope[Page[DoneCall]]
PhoneLogInfoAnswer = Envelope[PhoneLogInfo]


# -- callbacks (信息回调): POSTed to the configured address ---------------------------------------------
#: a finished call: ``data`` is the phoneLogInfo shape (sceneInstance, taskResult, phoneLog)
CALL_CALLBACK = "CALL_INSTANCE_RESULT"
#: a task's status changed: task state stays with polling
JOB_CALLBACK = "JOB_INFO_RESULT"


class CallbackBody(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    dataType: str
    #: decoded once ``dataType`` says which shape it is
    data: msgspec.Raw = msgspec.Raw(b"null")


class Callback(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``{"code":200,"data":{"dataType":...,"data":{...}}}``; the receiver answers ``success``."""

    code: int | None = None
    data: CallbackBody
