"""BYRobot callbacks (信息回调): finished calls become the polled calls' twins; task changes are left
to polling.

BYRobot signs nothing, so the callback URL carries a per-source secret ``token`` in its query. A
``CALL_INSTANCE_RESULT`` holds the phoneLogInfo shape; its ``sceneInstance`` has the fields of a
``queryDoneTaskPhones`` item, so it goes through :func:`poller.vendors.byrobot.call_snapshot` and
gets the event id of the polled record. BYRobot re-sends until the body says ``success`` (up to 10
times, backing off from one minute).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import timedelta, timezone

import msgspec

from poller.pipeline.identity import SourceId
from poller.push.receiver import Accepted, Rejected
from poller.vendors.byrobot import VENDOR, call_detail, call_snapshot, time_given
from poller.vendors.normalize import CountUnreadable, UnreadableValues
from schemas.vendors.byrobot import CALL_CALLBACK, JOB_CALLBACK, Callback, DoneCall, PhoneLogInfo

__all__ = ["ByRobotCallbackReceiver"]

_decode = msgspec.json.Decoder(Callback)
_decode_call = msgspec.json.Decoder(PhoneLogInfo)
_FINISHED = "2"


class ByRobotCallbackReceiver:
    vendor = VENDOR
    #: the content type of :meth:`ok`
    answer_type = "text/plain"

    def __init__(
        self,
        account: str,
        company_id: int,
        utc_offset_minutes: int,
        token: str,
        count_unreadable: CountUnreadable | None = None,
    ) -> None:
        self.account = account
        self.company_id = company_id
        self.tz = timezone(timedelta(minutes=utc_offset_minutes))
        self._token = token.encode()
        self.unreadable = UnreadableValues(VENDOR, account, count_unreadable)

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        given = query.get("token", "").encode()
        return hmac.compare_digest(given, self._token)

    def accept(self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> Accepted:
        try:
            callback = _decode.decode(body)
            kind = callback.data.dataType
            if kind == JOB_CALLBACK:
                return Accepted(source=None, calls=[], push_id=None)  # task state: polling's
            if kind != CALL_CALLBACK:
                raise Rejected(400, "unknown dataType")
            info = _decode_call.decode(callback.data.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise Rejected(400, "malformed callback") from None
        scene = info.sceneInstance
        if scene is None or scene.callInstanceId is None or scene.callJobId is None:
            raise Rejected(400, "callback without a call instance or task")
        if scene.companyId is not None and scene.companyId != self.company_id:
            raise Rejected(400, "companyId not configured for this account")
        # an end time that cannot be read still says the call ended: it is published as null
        if str(scene.status).strip() != _FINISHED or not time_given(scene.endTime):
            raise Rejected(400, "call not finished")
        item = DoneCall(
            callInstanceId=scene.callInstanceId,
            callJobId=scene.callJobId,
            customerTelephone=scene.customerTelephone,
            customerName=scene.customerName,
            status=scene.status,
            finishStatus=scene.finishStatus,
            duration=scene.duration,
            chatRound=scene.chatRound,
            startTime=scene.startTime,
            endTime=scene.endTime,
            callerPhone=scene.callerPhone,
        )
        call = call_snapshot(item, str(scene.callJobId), self.tz, call_detail(info, item), self.unreadable)
        source = SourceId(vendor=VENDOR, account=self.account, scope=str(self.company_id))
        pushed = msgspec.structs.replace(call, learned_by="push")
        # one callback per finished attempt: a re-sent one has the same instance, end and outcome
        push_id = f"{scene.callInstanceId}|{call.ended_at}|{call.raw_outcome}"
        return Accepted(source=source, calls=[pushed], push_id=push_id)

    async def resolve(self, accepted: Accepted) -> Accepted:
        return accepted  # a callback names its task

    def ok(self) -> bytes:
        return b"success"

    def refusal(self, status: int, reason: str) -> bytes:
        return msgspec.json.encode({"code": status, "resultMsg": reason})
