"""Reading a stream back in full: what the correctness checks of the cluster row count."""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["stream_messages"]


async def stream_messages(js: Any, stream: str, subject: str) -> list[tuple[dict[str, str], bytes]]:
    """Every message of ``stream`` under ``subject``, in order: headers and payload.

    An ephemeral consumer reads in batches (fetching by sequence one at a time is far slower); the
    read must reach the count the stream reports, or it raises.
    """
    info = await js.stream_info(stream)
    total = info.state.messages
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    messages: list[tuple[dict[str, str], bytes]] = []
    try:
        while len(messages) < total:
            try:
                batch = await sub.fetch(1000, timeout=5)
            except nats.errors.TimeoutError:
                break
            messages.extend((dict(msg.headers or {}), bytes(msg.data)) for msg in batch)
    finally:
        await sub.unsubscribe()
    if len(messages) < total:
        raise RuntimeError(f"read {len(messages)} of the {total} messages in {stream}")
    return messages
