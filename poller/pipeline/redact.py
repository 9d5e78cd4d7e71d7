"""The one redaction step applied to every string that leaves the process.

Events, log lines, metric label values, ``/readyz`` bodies and control replies all pass through a
:class:`Redactor`. Never sending secrets or personal data is the first defense; this is the last,
and it matters because vendor error messages are free text the vendor controls: they echo request
bodies (``client_secret`` included) and quote callee numbers.

What is masked:

* every configured secret's value (also URL- and JSON-escaped), passwords in URLs, bearer/basic
  credentials and JWTs, and ``key=value`` / ``"key": "value"`` pairs whose key names a credential;
* phone numbers: mainland mobiles with or without ``+86`` / ``0086`` / ``86`` and separators,
  landlines with an area code, and any other run of seven or more digits (a number we cannot
  tell from a phone number is treated as one);
* names given as ``name=`` / ``"customer_name": ...`` pairs.

Personal data follows the privacy policy (mask or hash, as the typed event fields do); where the
policy is ``keep`` only :meth:`Redactor.event` keeps it, because the operator opted in for events —
log lines, the operator's views and the state bucket (:meth:`Redactor.kept`) never carry it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import msgspec

from poller.pipeline.privacy import PersonalDataPolicy, Privacy, mask_phone

__all__ = ["MASK", "VERBATIM_FIELDS", "Redactor", "mask_url_password"]

MASK = "<redacted>"
#: configured secrets shorter than this would mask ordinary words; a secret that short is not one
MIN_SECRET_LENGTH = 4
#: a start of a configured secret this long is masked too (no innocent text begins like a secret)
MIN_SECRET_PREFIX = 8
#: event fields that are identities, codes or already under the privacy policy: never rewritten
VERBATIM_FIELDS = frozenset(
    {
        "event_id",
        "vendor",
        "account",
        "scope",
        "entity_id",
        "parent_id",
        "call_id",
        "vendor_call_id",
        "learned_by",
        "task_id",
        "api",
        "raw",
        "started_at",
        "ended_at",
        "callee_number",
        "caller_number",
        "callee_name",
    }
)

_CREDENTIAL_WORD = (
    r"secret|token|passw(?:or)?d|pwd|signature|access[_-]?key|authori[sz]ation|credential|api[_-]?key"
    r"|private[_-]?key|session[_-]?key|cookie"
)
#: keys that contain a credential word but name where or how a credential is used, not the credential
_NOT_A_CREDENTIAL = re.compile(
    r"(?i)(?:path|url|uri|endpoint|type|refresh_at|expires(?:_in|_at)?|ttl|count|length|id)$"
)
_KEY_SEPARATOR = r"(?P<sep>\\?[\"']?\s*[:=]\s*)(?P<quote>\\?[\"'])?"
_VALUE = (
    r"(?P<value>(?(quote)(?:\\(?![\"'])|[^\"'\\\n])+"
    r"|(?:(?:bearer|basic|tc3-hmac-sha256|acs3-hmac-sha256)\s+)?[^\s\"'\\&,;}\]<>]+))"
)
_KEYED_CREDENTIAL = re.compile(
    r"(?i)(?<![A-Za-z0-9_.-])(?P<key>[A-Za-z0-9_.-]*?(?:" + _CREDENTIAL_WORD + r")[A-Za-z0-9_-]*"
    r"|sign)(?![A-Za-z0-9_.-])" + _KEY_SEPARATOR + _VALUE
)
_NAME_KEYS = (
    r"(?:callee|customer|contact|user|real|full|nick|person|client|cust|member)?[_-]?name"
    r"|姓名|联系人|客户名称|客户姓名"
)
_KEYED_NAME = re.compile(
    r"(?i)(?<![A-Za-z0-9_.-])(?P<key>" + _NAME_KEYS + r")(?![A-Za-z0-9_.-])"
    r"(?P<sep>\\?[\"']?\s*[:=：]\s*)(?P<quote>\\?[\"'])?"
    r"(?P<value>(?(quote)(?:\\(?![\"'])|[^\"'\\\n])+|[^\s\"'\\&,;}\]<>，。]+))"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+(?!<redacted>)[A-Za-z0-9._~+/=-]{6,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
#: ``scheme://user:password@host``: the password part
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")

_SEP = r"[-\s.]?"
#: a mobile: 1[3-9] and nine more digits, grouped any way (one space, dash or dot between groups)
_MOBILE = rf"(?:(?:\+|00)?86{_SEP})?1{_SEP}[3-9](?:{_SEP}\d){{9}}"
#: a landline: an area code, then a local number of 7-8 digits, whole or split once (123 4567, 1234-5678)
_LANDLINE = r"(?:(?:\+|00)86[-\s]?\(?0?\d{2,3}\)?|\(?0\d{2,3}\)?)[-\s]?(?:\d{7,8}|\d{3,4}[-\s.]\d{4})"
#: a digit run long enough to be a number someone could be reached at (not part of a word or decimal)
_DIGIT_RUN = r"\d{7,}"
_PHONE = re.compile(
    # the lookahead first: a position that cannot start a number fails at once
    rf"(?=[\d+(])(?:(?<![0-9+])(?:{_MOBILE}|{_LANDLINE})(?!\d)"
    rf"|(?<![A-Za-z0-9])(?<!\d\.)(?:\+|00)?{_DIGIT_RUN}(?![A-Za-z0-9])(?!\.\d))"
)
_NOT_DIGIT = re.compile(r"\D")
_RECENT_LIMIT = 4096
_CREDENTIAL_HINT = re.compile(r"(?i)" + _CREDENTIAL_WORD + r"|sign").search
_NAME_HINT = re.compile(r"(?i)name|姓名|联系人|客户").search
_BEARER_HINT = re.compile(r"(?i)bearer|basic").search
#: three digits in a row, or a mobile grouped so that it has none
_DIGITS_HINT = re.compile(rf"\d{{3}}|1{_SEP}[3-9](?:{_SEP}\d){{9}}").search
#: what every masked thing contains at least one of: six digits with at most one separator after
#: the third (every digit run and landline masked here has them), a mobile however it is grouped,
#: a key/value separator, a scheme or token prefix. A name such as ``task-1024`` has none, so it
#: costs one search
_SUSPECT = rf"\d{{3}}[-\s.]?\d{{3}}|1{_SEP}[3-9](?:{_SEP}\d){{9}}|[:=：]|(?i:bearer|basic)|eyJ"

S = TypeVar("S", bound=msgspec.Struct)


def mask_url_password(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)


def _prefixes(value: str) -> str:
    """A pattern for the value or, when it is long, any start of it of ``MIN_SECRET_PREFIX`` or more
    characters: a vendor's message cut at a length limit may end half-way through a secret."""
    if len(value) <= MIN_SECRET_PREFIX:
        return re.escape(value)
    head, rest = value[:MIN_SECRET_PREFIX], value[MIN_SECRET_PREFIX:]
    tail = ""
    for char in reversed(rest):
        tail = f"(?:{re.escape(char)}{tail})?"
    return re.escape(head) + tail


def _secret_forms(value: str) -> set[str]:
    """The value as it may appear in a body or a message: raw, URL-encoded, JSON-escaped."""
    return {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}


class Redactor:
    """Masks secrets and personal data in free text; ``secrets`` are the configured values."""

    def __init__(self, secrets: Iterable[str] = (), privacy: Privacy | None = None) -> None:
        self._known: set[str] = set()
        self._secrets: re.Pattern[str] | None = None
        self.learn(secrets)
        self._fields: dict[type, tuple[str, ...]] = {}
        #: an entity's name comes back in each of its events: the last few thousand answers, kept
        self._recent: dict[str, str] = {}
        #: likewise for the names kept in state (a status change keeps the name it had)
        self._kept: dict[str, str] = {}
        self._privacy = privacy or Privacy(PersonalDataPolicy.MASK)
        hashing = self._privacy.policy is PersonalDataPolicy.HASH
        #: what the operator's views and logs show: masked, or hashed if the policy hashes
        self._outside = self._privacy if hashing else Privacy(PersonalDataPolicy.MASK)

    def learn(self, secrets: Iterable[str]) -> None:
        """Mask these values too (a reloaded configuration may bring new credentials)."""
        self._known |= {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        forms = {form for s in self._known for form in _secret_forms(s)}
        ordered = sorted(forms, key=len, reverse=True)  # the longest first: no half-masked value
        secrets_pattern = "|".join(_prefixes(v) for v in ordered)
        self._secrets = re.compile(secrets_pattern) if ordered else None
        #: text without any of these cannot hold anything masked here: most text skips every pass
        self._suspect = re.compile("|".join([_SUSPECT, secrets_pattern] if ordered else [_SUSPECT])).search
        self._recent = {}
        self._kept = {}

    def __call__(self, text: str) -> str:
        """For logs, ``/readyz``, metric labels and control replies: personal data never kept."""
        if not self._suspect(text):
            return text
        return self._personal(self._credentials(text), self._outside)

    def kept(self, text: str) -> str:
        """For text the poller keeps outside the process (entity names in the state bucket): as
        :meth:`__call__`, so under ``mask`` and ``hash`` it is what the events carry, and under
        ``keep`` it is masked still (the bucket is bookkeeping, not an output the operator opted in
        for). Stable: a kept text kept again, or published, is unchanged."""
        if not self._suspect(text):
            return text
        return _remembered(self._kept, text, lambda: self._personal(self._credentials(text), self._outside))

    def secrets(self, text: str) -> str:
        """Credentials only (personal data untouched)."""
        if not self._suspect(text):
            return text
        return self._credentials(text)

    def _credentials(self, text: str) -> str:
        """:meth:`secrets` of text already found suspect."""
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        # each pass only where its cheap hint is present: most text needs none of them
        if "://" in text:
            text = mask_url_password(text)
        if _has_separator(text) and _CREDENTIAL_HINT(text):  # a keyed credential has a separator
            text = _KEYED_CREDENTIAL.sub(_mask_credential, text)
        if "eyJ" in text:
            text = _JWT.sub(MASK, text)
        if _BEARER_HINT(text):
            text = _BEARER.sub(lambda m: m.group(1) + " " + MASK, text)
        return text

    def event_text(self, text: str) -> str:
        """For an event's free-text field: personal data as the privacy policy says."""
        if not self._suspect(text):
            return text
        return _remembered(self._recent, text, lambda: self._event_text(text))

    def _event_text(self, text: str) -> str:
        redacted = self._credentials(text)
        if self._privacy.policy is not PersonalDataPolicy.KEEP:
            redacted = self._personal(redacted, self._privacy)
        return redacted

    def event(self, event: S) -> S:
        """The event with every free-text field (vendor messages, names, reasons) redacted."""
        fields = self._fields.get(type(event))
        if fields is None:
            fields = self._fields[type(event)] = _text_fields(type(event))
        changes: dict[str, Any] | None = None
        for name in fields:
            value = getattr(event, name)
            if value is None:
                continue
            scrubbed = self._scrub(value)
            if scrubbed is not value:
                changes = changes or {}
                changes[name] = scrubbed
        return msgspec.structs.replace(event, **changes) if changes else event

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, Enum) or not isinstance(value, str | msgspec.Struct | dict | list):
            return value
        if isinstance(value, str):
            text = self.event_text(value)
            return value if text == value else text
        if isinstance(value, msgspec.Struct):
            return self.event(value)
        if isinstance(value, dict):
            items = {key: self._scrub(item) for key, item in value.items()}
            return items if any(items[k] is not value[k] for k in value) else value
        scrubbed = [self._scrub(item) for item in value]
        return scrubbed if any(a is not b for a, b in zip(scrubbed, value, strict=True)) else value

    @staticmethod
    def _personal(text: str, privacy: Privacy) -> str:
        def name(match: re.Match[str]) -> str:
            masked = privacy.name(match.group("value")) or ""
            return match.group(0)[: match.start("value") - match.start()] + masked

        def phone(match: re.Match[str]) -> str:
            digits = _NOT_DIGIT.sub("", match.group(0))
            if privacy.policy is PersonalDataPolicy.HASH:
                return privacy.phone(digits) or ""
            return mask_phone(digits)

        if _has_separator(text) and _NAME_HINT(text):
            text = _KEYED_NAME.sub(name, text)
        return _PHONE.sub(phone, text) if _DIGITS_HINT(text) else text


def _remembered(answers: dict[str, str], text: str, redact: Callable[[], str]) -> str:
    """``redact()`` of ``text``, kept among the last few thousand answers (an entity's name comes
    back in each of its events and sweeps)."""
    done = answers.get(text)
    if done is None:
        if len(answers) >= _RECENT_LIMIT:
            answers.clear()
        done = answers[text] = redact()
    return done


def _has_separator(text: str) -> bool:
    """Whether ``text`` has a key/value separator: a keyed credential or name cannot be without."""
    return ":" in text or "=" in text or "：" in text


def _may_hold_text(type_: msgspec.inspect.Type) -> bool:
    """Whether a value of this declared type can carry free text (enums and numbers cannot)."""
    if isinstance(type_, msgspec.inspect.Metadata):  # Annotated[..., Meta(description=...)]
        return _may_hold_text(type_.type)
    if isinstance(type_, msgspec.inspect.StrType):
        return True
    if isinstance(type_, msgspec.inspect.UnionType):
        return any(_may_hold_text(t) for t in type_.types)
    if isinstance(type_, msgspec.inspect.StructType):
        return bool(_text_fields(type_.cls))
    if isinstance(type_, msgspec.inspect.DictType):
        return _may_hold_text(type_.value_type)
    if isinstance(type_, msgspec.inspect.ListType | msgspec.inspect.TupleType):
        return _may_hold_text(type_.item_type) if hasattr(type_, "item_type") else True
    return isinstance(type_, msgspec.inspect.AnyType)


def _text_fields(cls: type) -> tuple[str, ...]:
    """The fields of a Struct the redaction visits: declared to hold text, and not an identity."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(f.name for f in info.fields if f.name not in VERBATIM_FIELDS and _may_hold_text(f.type))


def _mask_credential(match: re.Match[str]) -> str:
    key = match.group("key")
    if _NOT_A_CREDENTIAL.search(key):
        return match.group(0)
    prefix = match.group(0)[: match.start("value") - match.start()]
    value = match.group("value")
    scheme = re.match(r"(?i)(bearer|basic|tc3-hmac-sha256|acs3-hmac-sha256)\s+", value)
    return prefix + (scheme.group(0) if scheme else "") + MASK
