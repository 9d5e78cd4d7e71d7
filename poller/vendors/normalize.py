"""Raw vendor value → normalized enum, with unknown values logged once and mapped to ``unknown``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
