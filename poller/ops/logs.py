"""Logs: one JSON object per line, with the vendor/account/api context passed as ``extra``.

The real defense against leaking secrets and personal data is never logging them. The redaction
here is the last line, applied to every formatted line whatever its format: the configured secrets'
values, ``key=value`` / ``"key": "value"`` pairs whose key names a credential, bearer tokens,
passwords in URLs, and anything shaped like a mainland mobile number are masked.

A fault that lasts (NATS down, a vendor failing) repeats the same warning every cycle: the
handler lets the first one through, then one line per growing interval that says how many were
left out (:class:`RepeatSummary`), so an outage of hours costs a few dozen lines, not thousands.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "text")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: +86 / 86 prefix optional, separators optional; keeps the first 3 and last 4 digits
_PHONE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)[- ]?\d{4}[- ]?(\d{4})(?!\d)")
_CREDENTIAL_KEYS = (
    r"(?:[a-z_]*secret[a-z_]*|password|passwd|pwd|token|access_token|refresh_token|id_token|api_?key"
    r"|signature|sign|authorization|x-tc-authorization|credential)"
)
_KEYED = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])(" + _CREDENTIAL_KEYS + r")(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"((?:bearer|basic)\s+)?([^\s\"'\\&,;}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
#: ``scheme://user:password@host``: the password part
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")
MASK = "<redacted>"


def mask_url_password(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)


class Redactor:
    """Masks what must not reach a log line; ``secrets`` are the configured values to watch for."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # very short values would mask ordinary words; a secret that short is not worth the name
        values = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        text = _KEYED.sub(lambda m: m.group(1) + m.group(2) + (m.group(3) or "") + MASK, text)
        text = _BEARER.sub(lambda m: m.group(1) + " " + MASK, text)
        text = mask_url_password(text)
        return _PHONE.sub(r"\1\2****\3", text)


_default_redactor = Redactor()


def redact(text: str) -> str:
    return _default_redactor(text)


def _plain(value: Any) -> Any:
    return value if isinstance(value, int | float | bool | type(None)) else str(value)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", <extra fields>..., "error"?}``, one per line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or _default_redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = _plain(value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["error"] = record.exc_text
        return self.redactor(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """For a person at a terminal (the demo): ``time LEVEL logger: message key=value ...``."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        self.redactor = redactor or _default_redactor

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{key}={_plain(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        if extras:
            first, newline, rest = text.partition("\n")
            text = first + " " + " ".join(extras) + newline + rest
        return self.redactor(text)


#: the context fields that tell one repeated warning from another (counters like ``attempt`` do not)
_IDENTITY_FIELDS = ("vendor", "account", "scope", "api", "reason", "error", "subject", "signal")


class _Repeats:
    __slots__ = ("interval", "last_seen", "next_at", "suppressed", "window_start")

    def __init__(self, now: float, interval: float) -> None:
        self.window_start = now
        self.last_seen = now
        self.interval = interval
        self.next_at = now + interval
        self.suppressed = 0


class RepeatSummary(logging.Filter):
    """Summarizes repeated warnings: the first one, then "N more in the last M s" at growing intervals.

    A record repeats another when logger, level, message template and the identity fields of its
    context are the same. Records below WARNING always pass. A record let through after some were
    left out carries ``repeated`` (how many) and ``repeated_seconds`` (over how long). After
    ``quiet`` seconds without a repeat, the next one counts as new.
    """

    def __init__(
        self,
        *,
        first_interval: float = 5.0,
        max_interval: float = 300.0,
        quiet: float = 600.0,
        max_keys: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._first = first_interval
        self._max = max_interval
        self._quiet = quiet
        self._max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[tuple[object, ...], _Repeats] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (
            record.name,
            record.levelno,
            str(record.msg),
            *(str(getattr(record, name, "")) for name in _IDENTITY_FIELDS),
        )
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or now - seen.last_seen > self._quiet:
            if seen is not None and seen.suppressed:
                self._summarize(record, seen, now)
            self._seen[key] = _Repeats(now, self._first)
            self._seen.move_to_end(key)
            while len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
            return True
        seen.last_seen = now
        if now < seen.next_at:
            seen.suppressed += 1
            return False
        if seen.suppressed:
            self._summarize(record, seen, now)
        seen.window_start = now
        seen.interval = min(seen.interval * 2, self._max)
        seen.next_at = now + seen.interval
        seen.suppressed = 0
        return True

    @staticmethod
    def _summarize(record: logging.LogRecord, seen: _Repeats, now: float) -> None:
        seconds = round(now - seen.window_start)
        record.msg = f"{record.msg} ({seen.suppressed} more in the last {seconds} s)"
        record.repeated = seen.suppressed
        record.repeated_seconds = seconds


def check(level: str, fmt: str) -> str | None:
    """Why ``logging.level`` / ``logging.format`` are unusable (the field first), or None."""
    if level.upper() not in LEVELS:
        return f"logging.level: expected one of {', '.join(LEVELS)}, got {level!r}"
    if fmt not in FORMATS:
        return f"logging.format: expected one of {', '.join(FORMATS)}, got {fmt!r}"
    return None


def configure(
    level: str = "INFO", fmt: str = "json", stream: TextIO | None = None, secrets: Iterable[str] = ()
) -> logging.Handler:
    """Route every logger to one handler on ``stream`` (stderr); returns it so a caller can remove it."""
    problem = check(level, fmt)
    if problem is not None:
        raise ValueError(problem)
    redactor = Redactor(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    handler.addFilter(RepeatSummary())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # third-party chatter (aiohttp access, asyncio, the NATS client) stays at warnings
    for noisy in ("aiohttp.access", "asyncio", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
