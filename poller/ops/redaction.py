"""The one redaction step for text the operator's views show (last errors, event summaries).

A single function on purpose: when a shared redactor replaces the log masking, only this changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from poller.ops.logs import Redactor

__all__ = ["Redact", "status_redactor"]

Redact = Callable[[str], str]


def status_redactor(secrets: Iterable[str] = ()) -> Redact:
    """Masks the configured secrets' values, credential pairs, bearer tokens and phone numbers."""
    return Redactor(secrets)
