"""Who an event belongs to and how its id is made: the two things every step downstream agrees on."""

from __future__ import annotations

import hashlib

import msgspec

__all__ = ["SourceId", "event_id"]


def event_id(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


class SourceId(msgspec.Struct, frozen=True, kw_only=True):
    vendor: str
    account: str
    scope: str = ""

    @property
    def key(self) -> str:
        return f"{self.vendor}.{self.account}" + (f".{self.scope}" if self.scope else "")
