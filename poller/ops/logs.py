"""Logs: one JSON object per line, with the vendor/account/api context passed as ``extra``.

The real defense against leaking secrets and personal data is never logging them. The last line is
the process-wide redaction step (:mod:`poller.pipeline.redact`, the same one events and the ops port
use), applied to the message, every text field and the traceback, whatever the format.

A fault that lasts (NATS down, a vendor failing) repeats the same warning every cycle: the
handler lets the first one through, then one line per growing interval that says how many were
left out (:class:`RepeatSummary`), so an outage of hours costs a few dozen lines, not thousands.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from poller.pipeline.privacy import Privacy
from poller.pipeline.redact import VERBATIM_FIELDS, Redactor

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("json", "text")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_default_redactor = Redactor()
#: context fields that are our own identifiers (a ten-digit SdkAppId scope is not a phone number):
#: only credentials are masked there, as in the events' identity fields
_IDENTITY_FIELDS = VERBATIM_FIELDS | {"subject", "source"}


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
            "message": self.redactor(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                plain = _plain(value)
                # numbers we log are our own counts and identities are ours; other text may quote a vendor
                if isinstance(plain, str):
                    plain = self.redactor.secrets(plain) if key in _IDENTITY_FIELDS else self.redactor(plain)
                entry[key] = plain
        if record.exc_info:
            entry["error"] = self.redactor(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["error"] = self.redactor(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


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
_REPEAT_KEY_FIELDS = ("vendor", "account", "scope", "api", "reason", "error", "subject", "signal")


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
            *(str(getattr(record, name, "")) for name in _REPEAT_KEY_FIELDS),
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
    level: str = "INFO",
    fmt: str = "json",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    privacy: Privacy | None = None,
    redactor: Redactor | None = None,
) -> logging.Handler:
    """Route every logger to one handler on ``stream`` (stderr); returns it so a caller can remove it.

    ``redactor`` is the service's own (its secrets and privacy policy); else one is built from
    ``secrets`` and ``privacy``."""
    problem = check(level, fmt)
    if problem is not None:
        raise ValueError(problem)
    redactor = redactor or Redactor(secrets, privacy)
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
