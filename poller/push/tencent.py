"""Tencent CCC Data Push (``?action=cdr``): one call record per POST, HTTP basic auth or OAuth 2.0
client credentials.

The body is the ``DescribeTelCdr`` record shape with the ``SdkAppId`` at the root, so it goes
through the same :func:`poller.vendors.tencent_ccc.call_snapshot` as the polled record and gets
the same event id. The task is not in the record: a pushed call carries an empty ``task_id`` (the
polled copy, when it lands first, names it).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from poller.pipeline.identity import SourceId
from poller.push.guard import basic_auth_matches
from poller.push.oauth import ClientCredentials
from poller.push.receiver import Accepted, Rejected
from poller.vendors.tencent_ccc import VENDOR, call_snapshot, plausible_time
from schemas.vendors.tencent_ccc import TelCdrInfo

__all__ = ["PUSH_ID_HEADER", "TencentCdrReceiver"]

PUSH_ID_HEADER = "X-TCCC-PUSH-UUID"
#: the other data pushes (recordings, voicemail) are acknowledged and not used
_OTHER_ACTIONS = frozenset({"record", "recording", "voicemail", "voicemailRecord"})
_OUTBOUND = 1
_decode = msgspec.json.Decoder(TelCdrInfo)


class TencentCdrReceiver:
    vendor = VENDOR
    #: the content type of :meth:`ok`
    answer_type = "application/json"

    def __init__(
        self,
        account: str,
        sdk_app_ids: list[int],
        basic: tuple[str, str] | None,
        oauth: ClientCredentials | None = None,
    ) -> None:
        self.account = account
        self.sdk_app_ids = frozenset(sdk_app_ids)
        self._basic = basic
        self.oauth = oauth

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        header = headers.get("Authorization")
        if self._basic is not None and basic_auth_matches(header, *self._basic):
            return True
        return self.oauth is not None and self.oauth.bearer_valid(header)

    def accept(self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> Accepted:
        action = query.get("action")
        if action in _OTHER_ACTIONS:
            return Accepted(source=None, calls=[], push_id=None)
        if action != "cdr":
            raise Rejected(400, "unknown action")
        try:
            cdr = _decode.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise Rejected(400, "malformed record") from None
        if cdr.SdkAppId is None or cdr.SdkAppId not in self.sdk_app_ids:
            raise Rejected(400, "SdkAppId not configured for this account")
        if not cdr.SessionId or len(cdr.SessionId) > 128 or plausible_time(cdr.EndedTimestamp) is None:
            raise Rejected(400, "record without a session id or a plausible end")
        push_id = headers.get(PUSH_ID_HEADER) or None
        if push_id is not None and len(push_id) > 128:
            raise Rejected(400, "push id too long")
        source = SourceId(vendor=VENDOR, account=self.account, scope=str(cdr.SdkAppId))
        if cdr.Direction is not None and cdr.Direction != _OUTBOUND:
            return Accepted(source=None, calls=[], push_id=push_id)  # inbound: not an outbound call
        return Accepted(source=source, calls=[call_snapshot(cdr, "", learned_by="push")], push_id=push_id)

    def ok(self) -> bytes:
        return b'{"ErrCode":0}'

    def refusal(self, status: int, reason: str) -> bytes:
        return msgspec.json.encode({"ErrCode": status, "ErrMsg": reason})
