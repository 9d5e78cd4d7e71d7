"""Classified failures of a vendor API call: what the scheduler and health tracking act on."""

from __future__ import annotations

from schemas import DegradeReason


class SourceError(Exception):
    """A poll step failed; ``reason`` says how, ``retryable`` whether backing off can help."""

    reason: DegradeReason = DegradeReason.SERVER_ERROR
    retryable: bool = True

    def __init__(self, detail: str, *, api: str = "", retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.api = api
        #: seconds the vendor asked us to wait (``Retry-After``), already capped by the transport
        self.retry_after = retry_after
        #: wall-clock time of the first failed attempt of the request this error ends (set by the
        #: transport): a degradation episode counts from there, not from the end of the cycle
        self.first_failed_at: float | None = None


class Throttled(SourceError):
    reason = DegradeReason.THROTTLED


class AuthFailed(SourceError):
    reason = DegradeReason.AUTH_FAILED
    retryable = False


class Unreachable(SourceError):
    reason = DegradeReason.UNREACHABLE


class TimedOut(SourceError):
    reason = DegradeReason.TIMEOUT


class ServerError(SourceError):
    reason = DegradeReason.SERVER_ERROR


class BadResponse(SourceError):
    """The answer did not decode or broke the vendor's own contract: nothing from it is trusted."""

    reason = DegradeReason.BAD_RESPONSE


class ClientError(SourceError):
    """The vendor rejected our request as invalid; retrying the same request will not help soon."""

    reason = DegradeReason.CLIENT_ERROR
    retryable = False


class TokenExpired(AuthFailed):
    """The bearer token is no longer valid: refresh it and retry once."""

    retryable = True


class TooLarge(SourceError):
    """The vendor reports more than the configured ceiling: nothing is sized by that number.

    Not retried at once (the same answer would come back); the next cycle asks again.
    """

    reason = DegradeReason.TOO_LARGE
    retryable = False


class PublishRejected(SourceError):
    """NATS refused an event for good (larger than the server accepts, no permission on its subject).

    Raised by the publisher instead of retrying: the source degrades with this reason and backs off,
    and nothing of the cycle is committed, so the event is derived again once an operator fixed it.
    """

    reason = DegradeReason.PUBLISH_REJECTED
    retryable = False

    def __init__(self, detail: str, *, code: str, api: str = "publish") -> None:
        super().__init__(detail, api=api)
        #: the refusal's short label (payload_too_large, permission, ...), as in aicc_nats_refusals
        self.code = code


class NatsRejected(Exception):
    """NATS refused the configured credentials at start-up: a restart with the same ones cannot help."""


class NatsClosed(Exception):
    """NATS closed the connection for good while running (the client stops reconnecting)."""


class ConfigError(Exception):
    """Configuration is invalid; the message names the file and the field."""


class InternalError(SourceError):
    reason = DegradeReason.INTERNAL_ERROR


def as_source_error(exc: BaseException) -> SourceError | None:
    """The error that explains a failed poll: concurrent page fetches raise exception groups."""
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [as_source_error(inner) for inner in exc.exceptions]
        errors = [e for e in found if e is not None]
        # prefer a vendor-side explanation over our own bug, and the first one seen
        vendor_side = [e for e in errors if not isinstance(e, InternalError)]
        preferred = vendor_side or errors
        return preferred[0] if preferred else None
    if isinstance(exc, Exception):
        return InternalError(f"{type(exc).__name__} in the adapter")
    return None
