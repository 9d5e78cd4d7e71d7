"""Logs: one JSON object per line, with the vendor/account/api context passed as ``extra``.

The real defense against leaking secrets and personal data is never logging them. The last line is
the process-wide redaction step (:mod:`poller.pipeline.redact`, the same one events and the ops port
use), applied to the message, every text field and the traceback, whatever the format.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # third-party chatter (aiohttp access, asyncio, the NATS client) stays at warnings
    for noisy in ("aiohttp.access", "asyncio", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
