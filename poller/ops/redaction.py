"""Redaction for text the operator's views show (last errors, event summaries): the process-wide
step of :mod:`poller.pipeline.redact`, which logs and events use too."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from poller.pipeline.redact import Redactor

__all__ = ["Redact", "public_url", "status_redactor"]

Redact = Callable[[str], str]


def status_redactor(secrets: Iterable[str] = ()) -> Redact:
    """Masks the configured secrets' values, credential pairs, bearer tokens and phone numbers."""
    return Redactor(secrets)


def public_url(url: str) -> str:
    """A server URL (or a comma-separated list) without its user information.

    ``nats://user:password@host`` and ``nats://token@host`` both carry a credential before the
    ``@``: only the scheme, host and port are anybody's business.
    """
    shown = []
    for one in url.split(","):
        parts = urlsplit(one.strip())
        host = parts.netloc.rpartition("@")[2]
        shown.append(urlunsplit((parts.scheme, host, parts.path, "", "")))
    return ",".join(shown)
