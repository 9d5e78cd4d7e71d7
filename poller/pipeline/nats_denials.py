"""Publish permission violations handed to the write NATS refused, not left to its timeout.

NATS refuses a publish to a subject the user may not publish to with an ``-ERR`` beside the
request (nats-py passes it to the error callback, lower-cased); the refused request itself is never
answered and only times out, and a timeout is retried as if NATS were slow. The violation names the
subject, and each writer knows the subjects of its writes in flight: :class:`Denials` asks them
(:class:`Claimant`) which one it is, and the writer fails that write at once with
:class:`SubjectDenied`, a permanent ``permission`` fault (:mod:`poller.pipeline.nats_faults`).

Sound because a permission is a property of the subject: every write to a refused subject is
refused, so a violation may be pinned on any write in flight to it. A violation that matches no
write in flight, or writes to several subjects it cannot tell apart (they differ only in case), is
left unclaimed: the connection-level fault reports it, and those writes time out as before.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio
import nats.errors

__all__ = ["Claimant", "Denials", "SubjectDenied", "denied_subject", "guarded", "kv_subject_prefix"]

T = TypeVar("T")

#: the server's text (``Permissions Violation for Publish to "<subject>"``), as nats-py passes it on
_PUBLISH_VIOLATION = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


class SubjectDenied(nats.errors.Error):
    """NATS refused a publish to ``subject``: the user has no permission to publish there."""

    def __init__(self, subject: str) -> None:
        super().__init__(f'nats: permissions violation for publish to "{subject}"')
        self.subject = subject


def denied_subject(exc: BaseException) -> str | None:
    """The subject a publish permission violation names, lower-cased as nats-py passes it; else None."""
    found = _PUBLISH_VIOLATION.search(str(exc))
    return found.group(1).lower() if found else None


def kv_subject_prefix(kv: Any) -> str | None:
    """The subject prefix a nats-py KV bucket writes its keys under (``$KV.<bucket>.``), if known."""
    prefix = getattr(kv, "_pre", None)
    return prefix if isinstance(prefix, str) and prefix else None


class Claimant(Protocol):
    """A writer with writes in flight that a violation may be about."""

    def in_flight(self, lowered: str) -> set[str]:
        """The exact subjects of writes in flight whose lower-cased subject is ``lowered``."""
        ...

    def refuse(self, subject: str, error: SubjectDenied) -> None:
        """Fail every write in flight to ``subject`` with ``error``; it must not block."""
        ...


class _Write:
    __slots__ = ("scope", "subject")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.scope = anyio.CancelScope()


class Denials:
    """The writers of one connection; its error callback hands every violation to :meth:`report`.

    Itself the claimant of the writes run through :meth:`write` (KV puts, which are requests).
    """

    def __init__(self) -> None:
        self._claimants: list[Claimant] = [self]
        #: writes in flight through :meth:`write`, by lower-cased subject
        self._writes: dict[str, list[_Write]] = {}
        #: violations pinned on a write, and those no write claimed
        self.claimed = 0
        self.unclaimed = 0

    def add(self, claimant: Claimant) -> None:
        self._claimants.append(claimant)

    def report(self, exc: BaseException) -> bool:
        """Fail the write ``exc`` (a violation) refused; False when it is not one, or no write claims it."""
        lowered = denied_subject(exc)
        if lowered is None:
            return False
        found = {
            (claimant, subject) for claimant in self._claimants for subject in claimant.in_flight(lowered)
        }
        subjects = {subject for _, subject in found}
        if len(subjects) != 1:
            self.unclaimed += 1
            return False
        (subject,) = subjects
        error = SubjectDenied(subject)
        for claimant, _ in found:
            claimant.refuse(subject, error)
        self.claimed += 1
        return True

    async def write(self, subject: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, a write to ``subject``; raises :class:`SubjectDenied` as soon as NATS says it
        was refused, instead of waiting for its timeout."""
        write = _Write(subject)
        writes = self._writes.setdefault(subject.lower(), [])
        writes.append(write)
        try:
            with write.scope:
                return await call()
        finally:
            writes.remove(write)
            if not writes:
                self._writes.pop(subject.lower(), None)
        raise SubjectDenied(subject)  # only reached when refuse() cancelled the call

    def in_flight(self, lowered: str) -> set[str]:
        return {write.subject for write in self._writes.get(lowered, ())}

    def refuse(self, subject: str, error: SubjectDenied) -> None:
        for write in self._writes.get(subject.lower(), ()):
            if write.subject == subject:
                write.scope.cancel()


async def guarded(denials: Denials | None, subject: str | None, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` through ``denials`` when there are any and the subject is known; else as it is."""
    if denials is None or subject is None:
        return await call()
    return await denials.write(subject, call)
