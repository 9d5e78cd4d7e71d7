"""Where an event goes on NATS: subjects, and the header that says which source's state it belongs to."""

from __future__ import annotations

import functools
import re

from schemas.events import EventBase, event_type

__all__ = ["SOURCE_HEADER", "subject_for", "subject_token"]

#: which source's state an event belongs to; replay after a crash filters on it
SOURCE_HEADER = "Aicc-Source"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@functools.lru_cache(maxsize=4096)
def subject_token(text: str) -> str:
    """One NATS subject token: ``.``, ``*``, ``>`` and whitespace would change the subject's meaning."""
    return _UNSAFE.sub("_", text) or "_"


def subject_for(prefix: str, event: EventBase) -> str:
    return f"{prefix}.{subject_token(event.vendor)}.{subject_token(event.account)}.{event_type(event)}"
