"""A rule's pure parts: does an event match, which group it joins, and the text of a message."""

from __future__ import annotations

from typing import Any

import msgspec

from poller.tools.notify.config import Rule, placeholders
from schemas import CallFinished, Event, JobStatusChanged, SourceDegraded, TaskAppeared, TaskStatusChanged
from schemas.events import EntityEvent, event_type

__all__ = ["group_key", "matches", "render", "subject_matches"]


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


def matches(rule: Rule, subject: str, event: Event) -> bool:
    if not subject_matches(rule.subject, subject):
        return False
    if rule.types and event_type(event) not in rule.types:
        return False
    if rule.vendors and event.vendor not in rule.vendors:
        return False
    if rule.accounts and event.account not in rule.accounts:
        return False
    if rule.states:
        if not isinstance(event, TaskAppeared | TaskStatusChanged | JobStatusChanged):
            return False
        if event.current.state not in rule.states:
            return False
    if rule.kinds and not (isinstance(event, EntityEvent) and event.kind in rule.kinds):
        return False
    if rule.initial_inventory is not None and not (
        isinstance(event, TaskAppeared) and event.initial_inventory is rule.initial_inventory
    ):
        # a payload from before schema 2 does not say, so it matches neither value
        return False
    if rule.outcomes and not (isinstance(event, CallFinished) and event.outcome in rule.outcomes):
        return False
    return not rule.reasons or (isinstance(event, SourceDegraded) and event.reason in rule.reasons)


def _lookup(fields: dict[str, Any], dotted: str) -> Any:
    node: Any = fields
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fields(event: Event) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(event)
    fields["type"] = event_type(event)
    return fields


def group_key(rule: Rule, event: Event) -> tuple[str, ...]:
    """Events with the same key share one message; without ``group_by`` every event is its own."""
    if not rule.group_by:
        return (event.event_id,)
    fields = _fields(event)
    return tuple(str(_lookup(fields, name)) for name in rule.group_by)


def render(rule: Rule, events: list[Event]) -> str:
    """The template filled from the first event, plus the group's count and time span."""
    fields = _fields(events[0])
    extra = {
        "count": len(events),
        "rule": rule.name,
        "first_observed_at": events[0].observed_at.isoformat(timespec="seconds"),
        "last_observed_at": events[-1].observed_at.isoformat(timespec="seconds"),
        "degraded_for_minutes": f"{rule.degraded_for_minutes:g}",
    }
    text = rule.template
    for name in dict.fromkeys(placeholders(rule.template)):
        value = extra[name] if name in extra else _lookup(fields, name)
        text = text.replace("{" + name + "}", "-" if value is None else str(value))
    return text
