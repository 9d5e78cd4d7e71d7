"""Raw vendor value → normalized value: unknown enum values logged once and mapped to ``unknown``;
values that cannot be read at all (a time that is no time) published as null, logged and counted."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from schemas import CallOutcome, TaskState

E = TypeVar("E", bound=StrEnum)

log = logging.getLogger("poller.vendors.normalize")


class RawValueMap(Generic[E]):
    def __init__(self, vendor: str, field: str, mapping: Mapping[str, E], unknown: E) -> None:
        self.vendor = vendor
        self.field = field
        self.mapping = dict(mapping)
        self.unknown = unknown
        self._reported: set[str] = set()

    def normalize(self, raw: str) -> E:
        value = self.mapping.get(raw)
        if value is not None:
            return value
        if raw not in self._reported:
            self._reported.add(raw)
            log.warning(
                "unknown raw value mapped to unknown",
                extra={"vendor": self.vendor, "field": self.field, "raw_value": raw[:64]},
            )
        return self.unknown


def state_map(vendor: str, mapping: Mapping[str, TaskState], field: str = "status") -> RawValueMap[TaskState]:
    return RawValueMap(vendor, field, mapping, TaskState.UNKNOWN)


def outcome_map(vendor: str, mapping: Mapping[str, CallOutcome], field: str) -> RawValueMap[CallOutcome]:
    return RawValueMap(vendor, field, mapping, CallOutcome.UNKNOWN)


class UnreadableTime(ValueError):
    """A time field holds something that is no time the adapter can read."""


#: told (vendor, account, field) of each vendor value that could not be read
CountUnreadable = Callable[[str, str, str], None]

_LETTERS = re.compile(r"[^\W\d_]+")
_DIGITS = re.compile(r"\d+")


def value_shape(value: object) -> str:
    """What a vendor value looks like, without what it says: a time field may hold a phone number
    or a name, and neither may reach a log."""
    if not isinstance(value, str):
        return type(value).__name__
    return _DIGITS.sub("N", _LETTERS.sub("a", value.strip()))[:32]


class UnreadableValues:
    """Vendor values one source could not read, so they were published as null (or left out).

    A value that does not fit its field must never reach an event as it came: a consumer checking
    the contract (a ``date-time``) would get a wrong event, not a missing value. Each field and
    shape is logged once (its content never is), and every value is counted, so a vendor that
    changes a format shows on the dashboard and not only in one log line.
    """

    def __init__(self, vendor: str, account: str, count: CountUnreadable | None = None) -> None:
        self.vendor = vendor
        self.account = account
        self._count = count
        self._reported: set[tuple[str, str]] = set()

    def __call__(self, field: str, value: object) -> None:
        shape = value_shape(value)
        if (field, shape) not in self._reported:
            self._reported.add((field, shape))
            log.warning(
                "unreadable vendor value, not published as it came",
                extra={"vendor": self.vendor, "account": self.account, "field": field, "shape": shape},
            )
        if self._count is not None:
            self._count(self.vendor, self.account, field)
