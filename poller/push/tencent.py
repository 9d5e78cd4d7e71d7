"""Tencent CCC Data Push (``?action=cdr``): one call record per POST, HTTP basic auth or OAuth 2.0
client credentials.

The body is the ``DescribeTelCdr`` record shape with the ``SdkAppId`` at the root, so it goes
through the same :func:`poller.vendors.tencent_ccc.call_snapshot` as the polled record and gets
the same event id. The record names neither its task nor whether an auto-callout task placed it,
so polling that app answers (:class:`SessionTasks`): a pushed call is published with its task
exactly when polling would publish it, a seat's own call is acknowledged and not published, and
while polling cannot tell the push is refused with 503 so that Tencent pushes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

import msgspec

from poller.errors import SourceError
from poller.pipeline.identity import SourceId
from poller.push.guard import basic_auth_matches
from poller.push.oauth import ClientCredentials
from poller.push.receiver import Accepted, Rejected
from poller.vendors.normalize import CountUnreadable, UnreadableValues
from poller.vendors.tencent_ccc import VENDOR, call_snapshot, plausible_time
from schemas.vendors.tencent_ccc import TelCdrInfo

__all__ = ["ALREADY_POLLED", "NOT_TASK_CALL", "PUSH_ID_HEADER", "SessionTasks", "TencentCdrReceiver"]

log = logging.getLogger("poller.push")

PUSH_ID_HEADER = "X-TCCC-PUSH-UUID"
#: outcomes of a record acknowledged and not published: no followed task placed it (a seat's own
#: call), or it ended where polling has published every call already
NOT_TASK_CALL = "not_task_call"
ALREADY_POLLED = "already_polled"
#: the other data pushes (recordings, voicemail) are acknowledged and not used
_OTHER_ACTIONS = frozenset({"record", "recording", "voicemail", "voicemailRecord"})
_OUTBOUND = 1
_decode = msgspec.json.Decoder(TelCdrInfo)


class SessionTasks(Protocol):
    """What the receiver needs from the polling of one SdkAppId to publish what polling publishes."""

    @property
    def polled_until(self) -> int | None:
        """Every task call that ended at or before this Unix second is published; None: cannot answer."""
        ...

    async def task_of(self, session_id: str) -> str | None:
        """The task that placed the call, None for no followed task; raises SourceError if it cannot tell."""
        ...


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
        *,
        sessions: Callable[[int], SessionTasks | None],
        count_unreadable: CountUnreadable | None = None,
    ) -> None:
        self.account = account
        self.sdk_app_ids = frozenset(sdk_app_ids)
        self._basic = basic
        self.oauth = oauth
        #: the polling of an SdkAppId here, or None when this replica does not poll it now
        self._sessions = sessions
        self.unreadable = UnreadableValues(VENDOR, account, count_unreadable)

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        header = headers.get("Authorization")
        if self._basic is not None and basic_auth_matches(header, *self._basic):
            return True
        return self.oauth is not None and self.oauth.bearer_valid(header)

    def accept(self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> Accepted:
        """The record as a call whose task :meth:`resolve` still has to find."""
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
        return Accepted(
            source=source, calls=[call_snapshot(cdr, "", self.unreadable, learned_by="push")], push_id=push_id
        )

    async def resolve(self, accepted: Accepted) -> Accepted:
        """The call with its task, or acknowledged without it when polling publishes no such call."""
        if accepted.source is None or not accepted.calls:
            return accepted
        source, (call,) = accepted.source, accepted.calls
        assert call.ended_at is not None  # checked by accept
        ended = int(datetime.fromisoformat(call.ended_at).timestamp())
        sessions = self._sessions(int(source.scope))
        until = sessions.polled_until if sessions is not None else None
        if sessions is None or until is None:
            raise Rejected(503, "this app is not polled here yet, push again")
        task: str | None = None
        if ended > until:
            try:
                task = await sessions.task_of(call.call_id)
            except SourceError:
                raise Rejected(503, "the call's task cannot be looked up now, push again") from None
        if task:
            return Accepted(
                source=source, calls=[msgspec.structs.replace(call, task_id=task)], push_id=accepted.push_id
            )
        # ended where polling had published every call, by the time of the answer: polling's call
        later = sessions.polled_until
        outcome = (
            ALREADY_POLLED if ended <= until or (later is not None and ended <= later) else NOT_TASK_CALL
        )
        log.info(
            "pushed record acknowledged, not published: no task call polling would publish now",
            extra={
                "vendor": VENDOR,
                "account": self.account,
                "scope": source.scope,
                "call_id": call.call_id,
                "reason": outcome,
            },
        )
        return Accepted(source=None, calls=[], push_id=accepted.push_id, outcome=outcome)

    def ok(self) -> bytes:
        return b'{"ErrCode":0}'

    def refusal(self, status: int, reason: str) -> bytes:
        return msgspec.json.encode({"ErrCode": status, "ErrMsg": reason})
