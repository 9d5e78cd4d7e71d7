"""Run-time control of watched ids: a NATS request/reply subject per account.

Some vendors (Huawei AICC) can only be polled for ids we already know. Those ids come from the
config file and can be changed while the poller runs with a request on::

    <subject_prefix>-control.<vendor>.<account>.watch      e.g. aicc-control.huawei-aicc.main.watch

body (JSON, :class:`schemas.vendors.huawei.WatchRequest`): ``{"add": ["id", ...], "remove": [...]}``;
``{}`` asks for the current list. The reply (:class:`schemas.vendors.huawei.WatchReply`) is
``{"ok": true, "watched": [...], "added": [...], "removed": [...]}`` or ``{"ok": false, "error": "..."}``
with nothing changed. Only the replica that owns the account subscribes (others stay silent, so a
request to an account nobody serves gets NATS "no responders").

The subject is deliberately *outside* ``<subject_prefix>.>``: the event stream captures that whole
tree, so a request there would be stored as an "event" and JetStream's own publish ack would race
our reply.

Run-time decisions are committed with the source's state as cursors ``watch.<id>`` = 1 (watched) or
0 (not watched), written by the next poll cycle and committed after its events are acked. Cursors,
not entities: they are the source's own bookkeeping, they never produce events, and the differ
merges them key by key so a decision is never lost by a cycle that did not mention it. A decision
overrides the config file for the id it names; one that changes nothing is not recorded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import msgspec

from poller.pipeline.subjects import subject_token
from poller.vendors.watch import WatchList
from schemas.vendors.huawei import WatchReply, WatchRequest

__all__ = ["answer", "control_subject", "serve_control"]

log = logging.getLogger("poller.control")

#: how long a request waits for its source to load its committed state after a start
READY_TIMEOUT = 5.0

_decode_request = msgspec.json.Decoder(WatchRequest).decode
_encode = msgspec.json.Encoder().encode


def control_subject(prefix: str, vendor: str, account: str) -> str:
    return f"{prefix}-control.{subject_token(vendor)}.{subject_token(account)}.watch"


def answer(vendor: str, account: str, watch: WatchList, data: bytes) -> WatchReply:
    """One request → its reply. Pure apart from the watch list; never raises for a bad request."""
    try:
        request = _decode_request(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return WatchReply(ok=False, vendor=vendor, account=account, error=f"bad request: {exc}"[:300])
    both = sorted(set(request.add) & set(request.remove))
    if both:
        return WatchReply(
            ok=False, vendor=vendor, account=account, error=f"ids both added and removed: {both[:10]}"
        )
    added, removed = watch.update(request.add, request.remove)
    if added or removed:
        log.info(
            "watch list changed",
            extra={"vendor": vendor, "account": account, "added": len(added), "removed": len(removed)},
        )
    return WatchReply(
        ok=True, vendor=vendor, account=account, watched=watch.watched(), added=added, removed=removed
    )


async def _serve_one(
    nc: Any, subject: str, vendor: str, account: str, watch: WatchList, redact: Callable[[str], str]
) -> None:
    while True:
        try:
            sub = await nc.subscribe(subject)
            break
        except Exception as exc:  # connection closed for now: the poller keeps going meanwhile
            log.warning("cannot subscribe to the control subject yet", extra={"error": type(exc).__name__})
            await anyio.sleep(1.0)
    log.info("control subject ready", extra={"subject": subject})
    try:
        async for msg in sub.messages:
            try:
                with anyio.move_on_after(READY_TIMEOUT):
                    await watch.wait_loaded()
                if watch.loaded:
                    reply = answer(vendor, account, watch, msg.data)
                else:
                    reply = WatchReply(
                        ok=False, vendor=vendor, account=account, error="source not started yet; retry"
                    )
                if reply.error is not None:
                    # an error may quote the request (ids, whatever a caller pasted): redacted like all output
                    reply = msgspec.structs.replace(reply, error=redact(reply.error))
                if msg.reply:
                    await nc.publish(msg.reply, _encode(reply))
            except Exception as exc:  # a control request must never take the poller down
                log.warning("control request failed", extra={"subject": subject, "error": type(exc).__name__})
    finally:
        # a connection already closing drops the interest anyway
        with anyio.CancelScope(shield=True), anyio.move_on_after(2), contextlib.suppress(Exception):
            await sub.unsubscribe()


async def serve_control(
    nc: Any,
    prefix: str,
    watched: Sequence[tuple[str, str, WatchList]],
    redact: Callable[[str], str],
) -> None:
    """Answer watch-list requests for every (vendor, account, watch list) given; ``redact`` is the
    process's redaction step, applied to the text of every error reply."""
    async with anyio.create_task_group() as tg:
        for vendor, account, watch in watched:
            subject = control_subject(prefix, vendor, account)
            tg.start_soon(_serve_one, nc, subject, vendor, account, watch, redact)
