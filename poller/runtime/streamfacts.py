"""The stream's size and last sequence as last seen, for the status page (refreshed, not live)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["StreamFacts", "watch_stream"]

log = logging.getLogger("poller.runtime")


@dataclass
class StreamFacts:
    messages: int | None = None
    bytes: int | None = None
    last_seq: int | None = None
    #: monotonic reading of the last successful refresh
    checked: float | None = None


async def watch_stream(js: Any, stream: str, facts: StreamFacts, every: float = 2.0) -> None:
    """Refresh ``facts`` until cancelled; a failed refresh keeps the old facts (their age shows it)."""
    while True:
        try:
            with anyio.fail_after(every):
                info = await js.stream_info(stream)
        except Exception as exc:  # an outage is the connection's to report; the page shows the age
            log.debug("stream info unavailable", extra={"error": type(exc).__name__})
        else:
            facts.messages = info.state.messages
            facts.bytes = info.state.bytes
            facts.last_seq = info.state.last_seq
            facts.checked = time.monotonic()
        await anyio.sleep(every)
