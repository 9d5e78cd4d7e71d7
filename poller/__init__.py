"""aicc-poller: watches AI outbound-calling platforms and publishes typed change events to NATS."""

__version__ = "0.1.0"
