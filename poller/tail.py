"""``poller tail``: follow events with filters, as readable lines or raw JSON."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import msgspec
import nats
from nats.js.api import DeliverPolicy

from poller.publisher import subject_token
from poller.render import describe
from schemas import Event


def tail_subject(prefix: str, vendor: str | None, account: str | None, event_type: str | None) -> str:
    parts = [prefix] + [subject_token(p) if p else "*" for p in (vendor, account, event_type)]
    return ".".join(parts)


async def tail(
    server: str,
    subject: str,
    *,
    as_json: bool = False,
    from_start: bool = False,
    stream: str = "AICC",
    limit: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    decoder = msgspec.json.Decoder(Event)
    nc = await nats.connect(server)
    shown = 0
    sub: Any
    try:
        if from_start:
            js = nc.jetstream()
            sub = await js.subscribe(
                subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
        else:
            sub = await nc.subscribe(subject)
        async for msg in sub.messages:
            if as_json:
                print(msg.data.decode(), file=out, flush=True)
            else:
                try:
                    print(describe(decoder.decode(msg.data)), file=out, flush=True)
                except msgspec.DecodeError:
                    print(f"(undecodable message on {msg.subject})", file=out, flush=True)
            shown += 1
            if limit is not None and shown >= limit:
                break
    finally:
        await nc.close()
    return shown
