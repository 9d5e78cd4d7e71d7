"""The notifier's TOML file: NATS, the durable consumer, named targets and ``[[notify]]`` rules.

Decoded strictly like the poller's own configuration (unknown keys and wrong types name the file
and the field; secrets are ``{env = "NAME"}`` or ``{file = "path"}``). A rule may start from a
preset (the useful defaults) and override any of its keys.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import msgspec

from poller.config import LoggingConfig, NatsConfig, convert_section
from poller.errors import ConfigError
from poller.secrets import Secret
from schemas import EVENT_TYPES, CallOutcome, DegradeReason, EntityKind, TaskState

__all__ = [
    "PRESETS",
    "TEMPLATE_GROUP_FIELDS",
    "NotifierConfig",
    "NotifyConfig",
    "Rule",
    "Target",
    "TargetKind",
    "event_field_names",
    "load_notify_config",
    "parse_notify_config",
    "placeholders",
]


class TargetKind(StrEnum):
    WEBHOOK = "webhook"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    WECOM = "wecom"


class Target(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a rule's messages go. Robot URLs carry their access token or key, so the URL is a secret."""

    kind: TargetKind
    url: Secret
    #: DingTalk "加签" / Feishu "签名校验" secret; without it the robot must not require a signature
    secret: Secret | None = None
    timeout_seconds: float = 10.0


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which events (subject filter and payload conditions), where to, how worded, how grouped."""

    name: str
    target: str
    preset: str | None = None
    subject: str = "aicc.>"
    types: list[str] = []
    states: list[TaskState] = []
    outcomes: list[CallOutcome] = []
    reasons: list[DegradeReason] = []
    vendors: list[str] = []
    accounts: list[str] = []
    #: entity events only: task, job (a single OutboundBot callee) or job_group
    kinds: list[EntityKind] = []
    #: task-appeared only: false for tasks created since the first listing, true for that listing
    initial_inventory: bool | None = None
    #: source-degraded only: notify once the episode lasted this long without a source-recovered
    degraded_for_minutes: float = 0.0
    template: str = "[{vendor}/{account}] {type}: {event_id}"
    #: events with equal values of these fields share one message; empty: one message per event
    group_by: list[str] = []
    #: how long a group collects events after its first one before it is sent (0: at once)
    group_window_seconds: float = 0.0
    #: a group this large is sent before its window ends: held events count against max_ack_pending
    group_max_events: int = 1000
    #: messages per minute this rule may send; a group waiting for its turn keeps collecting
    max_messages_per_minute: int = 20
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0


class NotifierConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: the durable consumer's name: a restarted notifier resumes where this one stopped
    durable: str = "aicc-notify"
    #: where a new durable starts: "new" events only, or "all" the stream holds
    deliver: Literal["new", "all"] = "new"
    dead_letter_subject: str = "aicc-notify.dead"
    dead_letter_stream: str = "AICC_NOTIFY_DEAD"
    #: unacked messages are redelivered after this; held ones are kept alive by progress acks
    ack_wait_seconds: float = 30.0
    max_ack_pending: int = 20_000


class NotifyConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats: NatsConfig = NatsConfig()
    notifier: NotifierConfig = NotifierConfig()
    logging: LoggingConfig = LoggingConfig()
    targets: dict[str, Target] = {}
    notify: list[Rule] = []

    def secret_values(self) -> list[str]:
        """Robot URLs (their tokens) and signing secrets, for the log redactor; never printed."""
        found = [self.nats.password, self.nats.token]
        for target in self.targets.values():
            found += [target.url, target.secret]
        return [s.reveal() for s in found if s is not None]


_SYSTEM_STOPS = ["failed", "paused_by_system", "cancelled_by_system"]

#: the useful defaults; a rule names one with ``preset`` and may override any key
PRESETS: dict[str, dict[str, Any]] = {
    "task-failed-by-system": {
        "types": ["task-status-changed"],
        "states": _SYSTEM_STOPS,
        "template": (
            "[{vendor}/{account}] task {name} ({entity_id}) is now {current.state} "
            "(vendor status {current.raw}, was {previous.state})"
        ),
    },
    "source-degraded": {
        "types": ["source-degraded"],
        "degraded_for_minutes": 10.0,
        "template": (
            "[{vendor}/{account}] {api} has been degraded for over {degraded_for_minutes} min: "
            "{reason} ({detail})"
        ),
    },
    "new-task": {
        "types": ["task-appeared"],
        "kinds": ["task", "job_group"],
        "initial_inventory": False,
        "template": "[{vendor}/{account}] new {kind} {name} ({entity_id}): {current.state}",
    },
    "line-failures": {
        "types": ["call-finished"],
        "outcomes": ["caller_in_arrears", "caller_number_unavailable"],
        "group_by": ["vendor", "account", "outcome"],
        "group_window_seconds": 300.0,
        "template": (
            "[{vendor}/{account}] {count} calls failed with {outcome} (the calling line, not the "
            "callee) from {first_observed_at} to {last_observed_at}; e.g. task {task_id}"
        ),
    },
}

#: placeholders a template may use besides event fields
TEMPLATE_GROUP_FIELDS = frozenset(
    {"count", "rule", "first_observed_at", "last_observed_at", "degraded_for_minutes"}
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def _field_names(type_: Any, prefix: str = "") -> set[str]:
    info = msgspec.inspect.type_info(type_)
    names: set[str] = set()
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            name = prefix + field.encode_name
            names.add(name)
            inner = field.type
            if isinstance(inner, msgspec.inspect.Metadata):
                inner = inner.type
            if isinstance(inner, msgspec.inspect.UnionType):
                inner = next((t for t in inner.types if isinstance(t, msgspec.inspect.StructType)), inner)
            if isinstance(inner, msgspec.inspect.StructType):
                names |= _field_names(inner.cls, name + ".")
    return names


def event_field_names() -> set[str]:
    """Every field (dotted for nested ones) of any event, and the ``type`` tag."""
    names = {"type"}
    for event_type in EVENT_TYPES:
        names |= _field_names(event_type)
    return names


_TAGS = {str(t.__struct_config__.tag) for t in EVENT_TYPES}
_SUBJECT = re.compile(r"^[^\s.*>]+(\.([^\s.*>]+|\*))*(\.>)?$|^>$|^\*(\.([^\s.*>]+|\*))*(\.>)?$")


def _check_rule(rule: Rule, where: str, targets: Mapping[str, Target], fields: set[str]) -> None:
    if rule.target not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise ConfigError(f"{where}.target: no target named {rule.target!r} in [targets] (known: {known})")
    unknown = [t for t in rule.types if t not in _TAGS]
    if unknown:
        known = ", ".join(sorted(_TAGS))
        raise ConfigError(f"{where}.types: unknown event type {unknown[0]!r}; known: {known}")
    if not _SUBJECT.match(rule.subject):
        raise ConfigError(f"{where}.subject: not a NATS subject filter: {rule.subject!r}")
    for name in placeholders(rule.template):
        if name not in fields and name not in TEMPLATE_GROUP_FIELDS:
            raise ConfigError(f"{where}.template: unknown placeholder {{{name}}}")
    for name in rule.group_by:
        if name not in fields:
            raise ConfigError(f"{where}.group_by: {name!r} is not an event field")
    checks = (
        ("group_window_seconds", rule.group_window_seconds >= 0),
        ("group_max_events", 1 <= rule.group_max_events <= 1000),
        ("degraded_for_minutes", rule.degraded_for_minutes >= 0),
        ("max_messages_per_minute", rule.max_messages_per_minute >= 1),
        ("max_attempts", rule.max_attempts >= 1),
        ("backoff_seconds", rule.backoff_seconds > 0),
        ("max_backoff_seconds", rule.max_backoff_seconds >= rule.backoff_seconds),
    )
    for name, ok in checks:
        if not ok:
            raise ConfigError(f"{where}.{name}: out of range")
    if rule.initial_inventory is not None and rule.types != ["task-appeared"]:
        raise ConfigError(f'{where}.initial_inventory: only with types = ["task-appeared"]')
    if rule.degraded_for_minutes and rule.types != ["source-degraded"]:
        raise ConfigError(f'{where}.degraded_for_minutes: only with types = ["source-degraded"]')
    target = targets[rule.target]
    if target.secret is not None and target.kind not in (TargetKind.DINGTALK, TargetKind.FEISHU):
        raise ConfigError(f"{where}.target: a {target.kind.value} target takes no secret")


def parse_notify_config(
    data: Mapping[str, Any], *, path: str = "<config>", env: Mapping[str, str] | None = None
) -> NotifyConfig:
    env = os.environ if env is None else env
    base = Path(path).parent if path and not path.startswith("<") else Path.cwd()
    data = dict(data)
    raw_rules = data.pop("notify", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{path}: notify: expected an array of tables ([[notify]])")
    raw_targets = data.pop("targets", {})
    if not isinstance(raw_targets, dict):
        raise ConfigError(f"{path}: targets: expected tables ([targets.NAME])")
    # one by one, so an error names the target ([targets.ops] rather than targets[...])
    targets: dict[str, Target] = {
        str(name): convert_section(entry, Target, file=path, prefix=f"targets.{name}", env=env, base=base)
        for name, entry in raw_targets.items()
    }
    for name, target in targets.items():
        url = target.url.reveal()
        if not re.match(r"^https?://[^/\s]+", url):
            # the value may hold a token: say what is wrong, never what it is
            raise ConfigError(f"{path}: targets.{name}.url: expected an http:// or https:// URL")
        if target.timeout_seconds <= 0:
            raise ConfigError(f"{path}: targets.{name}.timeout_seconds: must be positive")
    top: NotifyConfig = msgspec.structs.replace(
        convert_section(data, NotifyConfig, file=path, prefix="", env=env, base=base), targets=targets
    )
    rules: list[Rule] = []
    fields = event_field_names()
    for i, entry in enumerate(raw_rules):
        where = f"{path}: notify[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        preset = entry.get("preset")
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"{where}.preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        merged = {**PRESETS.get(str(preset), {}), **entry}
        rule: Rule = convert_section(merged, Rule, file=path, prefix=f"notify[{i}]", env=env, base=base)
        if rule.name in {r.name for r in rules}:
            raise ConfigError(f"{where}.name: rule {rule.name!r} is defined twice")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", rule.name):
            raise ConfigError(f"{where}.name: use 1-64 of A-Z a-z 0-9 _ - (it becomes a subject token)")
        _check_rule(rule, where, top.targets, fields)
        rules.append(rule)
    if not rules:
        raise ConfigError(f"{path}: notify: at least one [[notify]] rule is needed")
    config: NotifyConfig = msgspec.structs.replace(top, notify=rules)
    return config


def load_notify_config(path: str, env: Mapping[str, str] | None = None) -> NotifyConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_notify_config(data, path=path, env=env)
