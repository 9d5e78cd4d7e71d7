"""Vendor push receivers: the fast path for finished calls; polling stays the authority.

A pushed record becomes the same ``call-finished`` event, with the same event id, as the polled
record of the same call, so JetStream keeps whichever arrives first. Nothing is acknowledged to the
vendor before JetStream acknowledged the event: an unacknowledged push is the vendor's to repeat.
"""

from poller.push.server import PushServer, PushStats, serve_push

__all__ = ["PushServer", "PushStats", "serve_push"]
