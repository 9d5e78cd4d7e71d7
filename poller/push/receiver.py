"""What a vendor's receiver gives the server: the calls of one push, or why it is refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from poller.pipeline.identity import SourceId
from poller.pipeline.snapshot import CallSnapshot

__all__ = ["Accepted", "Receiver", "Rejected"]


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """A push the vendor may be told it was received, once its calls' events are acked."""

    #: None when the push holds nothing the poller publishes (acknowledged all the same)
    source: SourceId | None
    calls: list[CallSnapshot]
    #: the vendor's id of this push, for its re-pushes
    push_id: str | None
    #: how it is counted: ``accepted``, or why it publishes nothing although it is acknowledged
    outcome: str = "accepted"


class Rejected(Exception):
    """A push refused with this HTTP status; the reason is safe to log (it quotes no content)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Receiver(Protocol):
    vendor: str
    account: str
    answer_type: str

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool: ...

    def accept(self, query: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> Accepted: ...

    async def resolve(self, accepted: Accepted) -> Accepted:
        """What polling knows and the push does not (the task of a Tencent record); raises
        :class:`Rejected` when it cannot be told now. Not called for a re-push already acknowledged."""
        ...

    def ok(self) -> bytes: ...

    def refusal(self, status: int, reason: str) -> bytes: ...
