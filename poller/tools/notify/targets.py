"""One message to one target: the body each robot expects, its signature, and whether it took it.

DingTalk custom robot ("加签"): ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(secret,
"{timestamp}\\n{secret}")) as query parameters. Feishu custom bot ("签名校验"): ``timestamp`` (s)
and ``sign`` = base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg="")) in the JSON body. WeCom
group robot: the key is in the URL, no signature. Each robot answers 200 with an error code in the
body, so a message counts as accepted only when that code is 0; a generic webhook on any 2xx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec

from poller.tools.notify.config import Target, TargetKind
from schemas import Event

__all__ = [
    "DeliveryFailed",
    "Message",
    "WebhookPayload",
    "deliver",
    "dingtalk_sign",
    "feishu_sign",
]

#: events carried in a generic webhook's body; the count says how many the message stands for
WEBHOOK_EVENTS = 50
#: WeCom rejects text content over 2048 bytes; the others take more, but a chat message this long is
#: already unreadable
TEXT_LIMIT_BYTES = {TargetKind.WECOM: 2048}
TEXT_LIMIT_DEFAULT = 4000


class DeliveryFailed(Exception):
    """The target did not take the message; the text is safe to log (no URL, no token)."""


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """What a rule sends: its text and the events it stands for."""

    rule: str
    text: str
    count: int
    first_observed_at: datetime
    last_observed_at: datetime
    events: list[Event]


class WebhookPayload(msgspec.Struct, frozen=True, kw_only=True):
    """The generic webhook's JSON body."""

    rule: str
    text: str
    count: int
    first_observed_at: datetime
    last_observed_at: datetime
    events: list[Event]
    events_omitted: int


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _clip(text: str, limit: int) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "..."


def _request(target: Target, message: Message, now: Callable[[], float]) -> tuple[str, bytes]:
    url = target.url.reveal()
    text = _clip(message.text, TEXT_LIMIT_BYTES.get(target.kind, TEXT_LIMIT_DEFAULT))
    body: dict[str, Any]
    if target.kind is TargetKind.WEBHOOK:
        payload = WebhookPayload(
            rule=message.rule,
            text=message.text,
            count=message.count,
            first_observed_at=message.first_observed_at,
            last_observed_at=message.last_observed_at,
            events=message.events[:WEBHOOK_EVENTS],
            events_omitted=max(0, len(message.events) - WEBHOOK_EVENTS),
        )
        return url, msgspec.json.encode(payload)
    if target.kind is TargetKind.DINGTALK:
        body = {"msgtype": "text", "text": {"content": text}}
        if target.secret is not None:
            ts = int(now() * 1000)
            query = urlencode({"timestamp": ts, "sign": dingtalk_sign(target.secret.reveal(), ts)})
            url = f"{url}{'&' if '?' in url else '?'}{query}"
    elif target.kind is TargetKind.FEISHU:
        body = {"msg_type": "text", "content": {"text": text}}
        if target.secret is not None:
            ts = int(now())
            body |= {"timestamp": str(ts), "sign": feishu_sign(target.secret.reveal(), ts)}
    else:
        body = {"msgtype": "text", "text": {"content": text}}
    return url, msgspec.json.encode(body)


class _RobotAnswer(msgspec.Struct, kw_only=True):
    errcode: int | None = None
    errmsg: str | None = None
    code: int | None = None
    msg: str | None = None
    StatusCode: int | None = None


_decode_answer = msgspec.json.Decoder(_RobotAnswer).decode


def _robot_accepted(kind: TargetKind, body: bytes) -> None:
    try:
        answer = _decode_answer(body)
    except msgspec.DecodeError:
        raise DeliveryFailed("the robot's answer is not the JSON it documents") from None
    if kind is TargetKind.FEISHU:
        code = answer.code if answer.code is not None else answer.StatusCode
        reason = answer.msg
    else:
        code, reason = answer.errcode, answer.errmsg
    if code != 0:
        raise DeliveryFailed(f"robot refused the message: code {code} {(reason or '')[:120]}")


async def deliver(
    session: aiohttp.ClientSession, target: Target, message: Message, now: Callable[[], float] = time.time
) -> None:
    """Send once; raises :class:`DeliveryFailed` unless the target accepted the message."""
    url, body = _request(target, message, now)
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout=aiohttp.ClientTimeout(total=target.timeout_seconds),
            allow_redirects=False,
        ) as resp:
            answer = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        # the exception text can carry the URL, and with it the robot's token: only its kind
        raise DeliveryFailed(f"cannot reach the target: {type(exc).__name__}") from None
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}")
    if target.kind is not TargetKind.WEBHOOK:
        _robot_accepted(target.kind, answer)
