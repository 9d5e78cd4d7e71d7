"""The vendor-facing transport: the rate limiter and the HTTP step every adapter shares."""

from poller.transport.http import Prepare, RequestObserver, Response, Transport, limiter_trace
from poller.transport.ratelimit import DEFAULT_MARGIN, FLEET_WIDE, LimiterRegistry, SlidingWindowLimiter, Slot

__all__ = [
    "DEFAULT_MARGIN",
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
