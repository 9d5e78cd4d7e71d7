"""Which NATS and JetStream failures a retry can fix, and which only an operator can.

Transient: timeouts, no responders, a connection closed or reconnecting, a server still starting
(503 without a permanent cause). These are retried with backoff, the state does not advance
meanwhile. Permanent: a message larger than the server or stream accepts, a permission or
authorization violation, a request JetStream rejects as invalid (400, e.g. a stream whose subjects
overlap another's), an account without JetStream. Retrying those the same way never succeeds:
they are reported once with their reason and retried only slowly, in case an operator fixed them.
"""

from __future__ import annotations

import msgspec
import nats.errors
import nats.js.errors

__all__ = ["PermanentFault", "is_auth_failure", "permanent_fault"]

#: JetStream error codes that say the request can never succeed as it is
_MESSAGE_TOO_LARGE = {10054}
_NO_JETSTREAM = {10039}  # "jetstream not enabled for account"


class PermanentFault(msgspec.Struct, frozen=True, kw_only=True):
    """``code`` is a short label (metrics, alert routing); ``detail`` says what NATS answered."""

    code: str
    detail: str


def is_auth_failure(exc: BaseException) -> bool:
    """NATS refused who we are (bad user/password/token/creds, or revoked)."""
    if isinstance(exc, nats.errors.AuthorizationError | nats.errors.InvalidUserCredentialsError):
        return True
    text = str(exc).lower()
    return "authorization violation" in text or ("authentication" in text and "expired" in text)


def permanent_fault(exc: BaseException) -> PermanentFault | None:
    """The fault behind ``exc`` if no retry can fix it; None when it is (or may be) transient."""
    detail = f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PermanentFault(code="payload_too_large", detail=detail)
    if is_auth_failure(exc):
        return PermanentFault(code="authorization", detail=detail)
    if "permissions violation" in str(exc).lower():
        return PermanentFault(code="permission", detail=detail)
    if isinstance(exc, nats.js.errors.APIError):
        # some subclasses (the KV ones) never set these fields
        err_code, code = getattr(exc, "err_code", None), getattr(exc, "code", None)
        if err_code in _MESSAGE_TOO_LARGE:
            return PermanentFault(code="payload_too_large", detail=detail)
        if err_code in _NO_JETSTREAM:
            return PermanentFault(code="no_jetstream", detail=detail)
        if code == 400 and not isinstance(exc, nats.js.errors.KeyValueError):  # CAS conflicts retry
            return PermanentFault(code="rejected", detail=detail)
    return None
