"""The vendor-facing transport: the rate limiter and the HTTP step every adapter shares."""

from poller.transport.http import (
    DEFAULT_MAX_RETRY_AFTER,
    Prepare,
    RequestObserver,
    Response,
    Transport,
    limiter_trace,
)
from poller.transport.ratelimit import DEFAULT_MARGIN, FLEET_WIDE, LimiterRegistry, SlidingWindowLimiter, Slot

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MAX_RETRY_AFTER",
    "FLEET_WIDE",
    "LimiterRegistry",
    "Prepare",
    "RequestObserver",
    "Response",
    "SlidingWindowLimiter",
    "Slot",
    "Transport",
    "limiter_trace",
]
